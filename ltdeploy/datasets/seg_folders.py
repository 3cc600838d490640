"""Semantic segmentation data in two layouts, found from the folder:

- ADE20K as downloaded (`ADEChallengeData2016/`): images/{training,validation}/*.jpg beside
  annotations/{training,validation}/*.png, class names in `objectInfo150.csv` (or the devkit's
  `objectInfo150.txt`, or CSAIL's `object150_info.csv`). Label 0 is "other" and is ignored; 1..150 are
  the classes, read as 0..149 (mmsegmentation's reduce_zero_label).
- seg-lt (ltdeploy's own): images/{train,val}/ beside annotations/{train,val}/, `classes.txt` (line i =
  class i), 255 = ignore.
Label maps are single-channel 8-bit PNGs of the image's size.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from ltdeploy.errors import DatasetError

IGNORE = 255
SPLIT_NAMES = {"train": ("train", "training"), "val": ("val", "validation")}
ADE_CLASS_FILES = ("objectInfo150.csv", "objectInfo150.txt", "object150_info.csv")


@dataclass
class SegSplit:
    """Paired image and label-map paths of one split, with the class names; `reduce_zero_label` for ADE20K's
    annotations (0 = other → ignored, k → k - 1)."""

    images: list[str]
    labels: list[str]
    class_names: list[str]
    reduce_zero_label: bool = False
    class_ids: list[int] = field(default_factory=list)  # the dataset's own label value of each class

    def read_labels(self, i: int) -> np.ndarray:
        """Label map i as the model trains on it: 0..K-1 and IGNORE (H, W) uint8; DatasetError on a value
        above the class count."""
        lab = read_label_map(self.labels[i])
        if self.reduce_zero_label:
            lab = lab - np.uint8(1)  # 0 wraps round to 255 = IGNORE
        valid = lab[lab != IGNORE]
        if valid.size and int(valid.max()) >= len(self.class_names):
            raw = int(valid.max()) + (1 if self.reduce_zero_label else 0)
            raise DatasetError(f"{self.labels[i]}: label {raw}, but the dataset has {len(self.class_names)} "
                               f"classes ({'1' if self.reduce_zero_label else '0'}..{self.class_ids[-1]})")
        return lab


def is_seg_dataset(root: str | None) -> bool:
    """True for either segmentation layout (an annotations/ folder beside images/)."""
    return bool(root) and os.path.isdir(os.path.join(root, "annotations")) and \
        os.path.isdir(os.path.join(root, "images"))


def ade20k_class_names(path: str) -> list[str]:
    """Class names, in index order, from ADE20K's objectInfo150 table (tab- or comma-separated columns with
    Idx and Name; a name lists synonyms, separated by commas or semicolons, and the first one is used)."""
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t" if "\t" in text.splitlines()[0] else ","))
    try:
        rows = sorted(rows, key=lambda r: int(r["Idx"]))
        names = [r["Name"].replace(";", ",").split(",")[0].strip() for r in rows]
    except (KeyError, ValueError, TypeError, AttributeError):
        raise DatasetError(f"{path}: expected columns Idx and Name, one row per class") from None
    if [int(r["Idx"]) for r in rows] != list(range(1, len(rows) + 1)) or not names:
        raise DatasetError(f"{path}: class indices must run 1..N")
    return names


def _class_table(root: str) -> tuple[list[str], bool, list[int]]:
    """(names, reduce_zero_label, ids) from classes.txt (seg-lt) or an objectInfo150 file (ADE20K)."""
    listed = os.path.join(root, "classes.txt")
    if os.path.isfile(listed):
        with open(listed, encoding="utf-8") as fh:
            names = [line.strip() for line in fh if line.strip()]
        return names, False, list(range(len(names)))
    for folder in (root, os.path.dirname(os.path.abspath(root))):
        for name in ADE_CLASS_FILES:
            if os.path.isfile(os.path.join(folder, name)):
                names = ade20k_class_names(os.path.join(folder, name))
                return names, True, list(range(1, len(names) + 1))
    raise DatasetError(f"{root}: no class names (classes.txt, or ADE20K's {' / '.join(ADE_CLASS_FILES)})")


def read_seg_split(root: str, split: str) -> SegSplit:
    """Pair images and annotations by file stem; ADE20K's training/validation folder names work too."""
    for name in SPLIT_NAMES.get(split, (split,)):
        img_dir, ann_dir = os.path.join(root, "images", name), os.path.join(root, "annotations", name)
        if os.path.isdir(img_dir) and os.path.isdir(ann_dir):
            break
    else:
        raise DatasetError(f"{root}: no images/{split} and annotations/{split} folders "
                           f"({' or '.join(SPLIT_NAMES.get(split, (split,)))})")
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
        raise DatasetError(f"{img_dir}: {len(missing)} images have no annotation, e.g. {missing[0]}")
    names, reduce_zero, ids = _class_table(root)
    return SegSplit(images, labels, names, reduce_zero, ids)


def read_label_map(path: str) -> np.ndarray:
    """A single-channel uint8 label map (H, W) as stored."""
    lab = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if lab is None or lab.ndim != 2 or lab.dtype != np.uint8:
        raise DatasetError(f"{path}: expected a single-channel 8-bit PNG label map")
    return lab


def pixel_counts(split: SegSplit) -> list[int]:
    """Pixels per class over the split's label maps (ignore pixels excluded): G-RW's n_c."""
    k = len(split.class_names)
    counts = np.zeros(k, np.int64)
    for i in range(len(split.labels)):
        lab = split.read_labels(i)
        counts += np.bincount(lab[lab != IGNORE], minlength=k)
    return counts.tolist()
