"""The ADE20K layout: images/<split>/NAME.(jpg|png) with annotations/<split>/NAME.png (single channel,
255 = ignore) and classes.txt (line i = class i)."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm import tqdm

from ltdeploy.image_io import read_image
from ltdeploy.preprocess import PreprocessConfig, preprocess_image
from training.image_data import PRELOAD_LIMIT_BYTES

IGNORE = 255
SPLIT_NAMES = {"train": ("train", "training"), "val": ("val", "validation")}


@dataclass
class SegSplit:
    """Paired image and label-map paths of one split, with the class names."""

    images: list[str]
    labels: list[str]
    class_names: list[str]


def is_seg_dataset(root: str) -> bool:
    """True for the ADE20K layout (an annotations/ folder beside images/)."""
    return os.path.isdir(os.path.join(root, "annotations"))


def read_seg_split(root: str, split: str) -> SegSplit:
    """Pair images and annotations by file stem; ADE20K's training/validation folder names work too."""
    for name in SPLIT_NAMES.get(split, (split,)):
        img_dir, ann_dir = os.path.join(root, "images", name), os.path.join(root, "annotations", name)
        if os.path.isdir(img_dir) and os.path.isdir(ann_dir):
            break
    else:
        raise FileNotFoundError(f"{root}: no images/{split} and annotations/{split} folders")
    anns = {os.path.splitext(f)[0]: os.path.join(ann_dir, f) for f in os.listdir(ann_dir) if f.endswith(".png")}
    images, labels, missing = [], [], []
    for f in sorted(os.listdir(img_dir)):
        stem = os.path.splitext(f)[0]
        if stem in anns:
            images.append(os.path.join(img_dir, f))
            labels.append(anns[stem])
        else:
            missing.append(f)
    if missing:
        raise ValueError(f"{img_dir}: {len(missing)} images have no annotation, e.g. {missing[0]}")
    with open(os.path.join(root, "classes.txt"), encoding="utf-8") as fh:
        names = [line.strip() for line in fh if line.strip()]
    return SegSplit(images, labels, names)


def read_label_map(path: str) -> np.ndarray:
    """A single-channel uint8 label map (H, W)."""
    lab = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if lab is None or lab.ndim != 2 or lab.dtype != np.uint8:
        raise ValueError(f"{path}: expected a single-channel 8-bit PNG label map")
    return lab


def pixel_counts(split: SegSplit) -> list[int]:
    """Pixels per class over the split's label maps (ignore pixels excluded): G-RW's n_c."""
    k = len(split.class_names)
    counts = np.zeros(k, np.int64)
    for path in split.labels:
        lab = read_label_map(path)
        valid = lab[lab != IGNORE]
        if valid.size and valid.max() >= k:
            raise ValueError(f"{path}: label {int(valid.max())} but only {k} classes")
        counts += np.bincount(valid, minlength=k)
    return counts.tolist()


class SegDataset(Dataset):
    """(image tensor (3, H, W), label map (H, W) int64) pairs at the model's input size.

    The image goes through the runtime's own preprocessing; the label map is resized with nearest
    neighbour when its size differs. Segmentation preprocessing resizes straight to the input size
    (resize_short 0), so image and labels stay aligned.
    """

    def __init__(self, split: SegSplit, cfg: PreprocessConfig) -> None:
        if cfg.resize_short:
            raise ValueError("segmentation preprocessing must resize straight to the input size (resize_short 0)")
        self.split, self.cfg = split, cfg

    def __len__(self) -> int:
        return len(self.split.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = preprocess_image(read_image(self.split.images[i]), self.cfg)
        lab = read_label_map(self.split.labels[i])
        h, w = self.cfg.input_size
        if lab.shape != (h, w):
            lab = cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST)
        return torch.from_numpy(x), torch.from_numpy(lab.astype(np.int64))


def make_seg_loader(split: SegSplit, cfg: PreprocessConfig, batch_size: int, shuffle: bool, workers: int = 2,
                    seed: int = 0, desc: str = "decode") -> DataLoader:
    """Preloaded into memory when small (as image_data.make_loader), streamed through workers when large."""
    ds = SegDataset(split, cfg)
    h, w = cfg.input_size
    small = len(ds) * h * w * (3 * 4 + 8) < PRELOAD_LIMIT_BYTES
    if small:
        with ThreadPoolExecutor(4) as pool:
            pairs = list(tqdm(pool.map(ds.__getitem__, range(len(ds))), total=len(ds), desc=desc, unit="img",
                              leave=False))
        ds = TensorDataset(torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]))
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(seed),
                      num_workers=0 if small else workers)
