"""The ADE20K layout: images/<split>/NAME.(jpg|png) with annotations/<split>/NAME.png (single channel,
255 = ignore) and classes.txt (line i = class i)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

IGNORE = 255
SPLIT_NAMES = {"train": ("train", "training"), "val": ("val", "validation")}


@dataclass
class SegSplit:
    """Paired image and label-map paths of one split, with the class names."""

    images: list[str]
    labels: list[str]
    class_names: list[str]


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
