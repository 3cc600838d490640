"""Segmentation batches for training: a split's images and label maps through the runtime's preprocessing
(the layouts themselves are read by ltdeploy.datasets.seg_folders)."""
from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ltdeploy.datasets.seg_folders import SegSplit
from ltdeploy.errors import ImageError
from ltdeploy.image_io import read_image
from ltdeploy.preprocess import PreprocessConfig, preprocess_image
from training.core.bad_images import BadImage, collate_good
from training.core.preload import InMemory, decode_all, fits_in_memory
from training.core.transforms import augment_segmentation, to_model_values


class EvalSegView:
    """A decoded image and its label map → the runtime's tensor (3, h, w) and the map at the model's input size
    (nearest neighbour where its size differs). Segmentation resizes straight to the input size, so the two
    stay aligned."""

    def __init__(self, cfg: PreprocessConfig) -> None:
        if cfg.resize != "stretch":
            raise ValueError("segmentation preprocessing must resize straight to the input size (resize 'stretch')")
        self.cfg = cfg

    def __call__(self, rgb: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = self.cfg.input_size
        if labels.shape != (h, w):
            labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
        return torch.from_numpy(preprocess_image(rgb, self.cfg)), torch.from_numpy(labels.astype(np.int64))


class AugmentSegView:
    """A decoded image and its label map augmented together by the recipe's v2 transforms (labels padded with
    the ignore label), then mapped to the model's values."""

    def __init__(self, cfg: PreprocessConfig, transforms) -> None:
        self.cfg, self.transforms = cfg, transforms

    def __call__(self, rgb: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
        image, out = augment_segmentation(self.transforms, image, torch.from_numpy(labels.astype(np.int64)))
        return to_model_values(image, self.cfg), out


class SegDataset(Dataset):
    """A split's (image, label map) pairs decoded one per item and mapped by `view` (default: the eval
    preprocessing, `EvalSegView`); with `skip_bad` an unreadable image gives a BadImage (training)."""

    def __init__(self, split: SegSplit, cfg: PreprocessConfig, skip_bad: bool = False, view=None) -> None:
        self.split, self.skip_bad, self.view = split, skip_bad, view or EvalSegView(cfg)

    def __len__(self) -> int:
        return len(self.split.images)

    def decode(self, i: int) -> tuple[np.ndarray, np.ndarray] | BadImage:
        """The decoded image and its label map, as read."""
        try:
            rgb = read_image(self.split.images[i])
        except ImageError as exc:
            if not self.skip_bad:
                raise
            return BadImage(str(self.split.images[i]), str(exc))
        return rgb, self.split.read_labels(i)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor] | BadImage:
        item = self.decode(i)
        return item if isinstance(item, BadImage) else self.view(*item)


def seg_images(split: SegSplit, cfg: PreprocessConfig, desc: str = "decode", skip_bad: bool = False,
               view=None) -> Dataset:
    """The split decoded once into memory when its images and label maps fit the budget (see
    training/core/preload.py), else decoded per item; either way mapped by `view`."""
    source = SegDataset(split, cfg, skip_bad, view)
    if fits_in_memory(split.images, cfg.input_size, per_pixel=3 + 1):  # RGB, and an 8-bit label map
        return decode_all(len(source), source.decode, source.view, desc)
    return source


def make_seg_loader(split: SegSplit, cfg: PreprocessConfig, batch_size: int, shuffle: bool, workers: int = 2,
                    seed: int = 0, desc: str = "decode", skip_bad: bool = False) -> DataLoader:
    """Decoded once into memory when small, streamed through worker processes when large. With `skip_bad`
    (training) unreadable images are left out and counted rather than stopping the run."""
    ds = seg_images(split, cfg, desc, skip_bad)
    small = isinstance(ds, InMemory)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(seed),
                        num_workers=0 if small else workers, collate_fn=collate_good if skip_bad and not small else None)
    loader.bad_images = getattr(ds, "skipped", 0)
    return loader
