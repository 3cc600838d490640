"""Segmentation batches for training: a split's images and label maps through the runtime's preprocessing
(the layouts themselves are read by ltdeploy.datasets.seg_folders)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm import tqdm

from ltdeploy.datasets.seg_folders import SegSplit
from ltdeploy.errors import ImageError
from ltdeploy.image_io import read_image
from ltdeploy.preprocess import PreprocessConfig, preprocess_image
from training.classification.data import PRELOAD_LIMIT_BYTES
from training.core.bad_images import BadImage, BadImageLog, collate_good
from training.core.transforms import augment_segmentation, to_model_values


class SegDataset(Dataset):
    """(image tensor (3, H, W), label map (H, W) int64) pairs at the model's input size.

    The image goes through the runtime's own preprocessing; the label map is resized with nearest
    neighbour when its size differs. Segmentation preprocessing resizes straight to the input size
    (resize_short 0), so image and labels stay aligned.
    """

    def __init__(self, split: SegSplit, cfg: PreprocessConfig, skip_bad: bool = False) -> None:
        if cfg.resize != "stretch":
            raise ValueError("segmentation preprocessing must resize straight to the input size (resize 'stretch')")
        self.split, self.cfg, self.skip_bad = split, cfg, skip_bad

    def __len__(self) -> int:
        return len(self.split.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor] | BadImage:
        try:
            x = preprocess_image(read_image(self.split.images[i]), self.cfg)
        except ImageError as exc:
            if not self.skip_bad:
                raise
            return BadImage(str(self.split.images[i]), str(exc))
        lab = self.split.read_labels(i)
        h, w = self.cfg.input_size
        if lab.shape != (h, w):
            lab = cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST)
        return torch.from_numpy(x), torch.from_numpy(lab.astype(np.int64))


class AugmentedSegDataset(Dataset):
    """Training images and label maps decoded in the loader's workers and augmented together by the recipe's
    v2 transforms (padding labels with the ignore label), then mapped to the model's values."""

    def __init__(self, split: SegSplit, cfg: PreprocessConfig, transforms) -> None:
        self.split, self.cfg, self.transforms = split, cfg, transforms

    def __len__(self) -> int:
        return len(self.split.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor] | BadImage:
        try:
            rgb = read_image(self.split.images[i])
        except ImageError as exc:
            return BadImage(str(self.split.images[i]), str(exc))
        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
        labels = torch.from_numpy(self.split.read_labels(i).astype(np.int64))
        image, labels = augment_segmentation(self.transforms, image, labels)
        return to_model_values(image, self.cfg), labels


def make_seg_loader(split: SegSplit, cfg: PreprocessConfig, batch_size: int, shuffle: bool, workers: int = 2,
                    seed: int = 0, desc: str = "decode", skip_bad: bool = False) -> DataLoader:
    """Preloaded into memory when small (as image_data.make_loader), streamed through workers when large. With
    `skip_bad` (training) unreadable images are left out and counted rather than stopping the run."""
    ds = SegDataset(split, cfg, skip_bad)
    h, w = cfg.input_size
    small = len(ds) * h * w * (3 * 4 + 8) < PRELOAD_LIMIT_BYTES
    skipped = BadImageLog()
    if small:
        with ThreadPoolExecutor(4) as pool:
            items = list(tqdm(pool.map(ds.__getitem__, range(len(ds))), total=len(ds), desc=desc, unit="img",
                              leave=False))
        skipped.add([p for p in items if isinstance(p, BadImage)])
        pairs = [p for p in items if not isinstance(p, BadImage)]
        ds = TensorDataset(torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]))
    loader = DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(seed),
                        num_workers=0 if small else workers, collate_fn=collate_good if skip_bad and not small else None)
    loader.bad_images = skipped.count
    return loader
