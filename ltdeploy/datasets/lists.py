"""The ImageNet-LT list format: `relative/path label` per line, plus an optional class-names file.

Real ImageNet-LT / Places-LT / iNaturalist lists (`ImageNet_LT_train.txt`, ...) work unchanged;
ltdeploy's generators write `train.txt`, `val.txt`, `test.txt` and `classes.txt` in the same format.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import numpy as np


@dataclass
class Split:
    """One split of a long-tailed list dataset: absolute image paths and integer labels."""

    paths: list[str]
    labels: np.ndarray  # int64 (N,)
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        """K."""
        return len(self.class_names)

    def class_counts(self) -> list[int]:
        """Images per class, K entries."""
        return np.bincount(self.labels, minlength=self.num_classes).astype(int).tolist()


def find_list(root: str, split: str) -> str:
    """`root/split.txt`, or the one `root/*_split.txt` (e.g. ImageNet_LT_train.txt)."""
    direct = os.path.join(root, f"{split}.txt")
    if os.path.isfile(direct):
        return direct
    found = sorted(glob.glob(os.path.join(root, f"*_{split}.txt")))
    if len(found) != 1:
        raise FileNotFoundError(f"{root}: expected {split}.txt or one *_{split}.txt, found {found or 'none'}")
    return found[0]


def is_list_dataset(root: str | None) -> bool:
    """True for a folder holding a train, val or test list."""
    if not root or not os.path.isdir(root):
        return False
    for split in ("train", "val", "test"):
        try:
            find_list(root, split)
            return True
        except FileNotFoundError:
            continue
    return False


def read_class_names(root: str, num_classes: int, model_classes: int | None = None) -> list[str]:
    """Names from `root/classes.txt` (one per line, line i = label i), else `class_<i>`; `model_classes`, when
    given, is the class count of the model the data is for, which classes.txt must match."""
    path = os.path.join(root, "classes.txt")
    if not os.path.isfile(path):
        return [f"class_{i}" for i in range(num_classes)]
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if model_classes is not None and len(names) != model_classes:
        raise ValueError(f"{root}: the dataset has {len(names)} classes (classes.txt) but the model has "
                         f"{model_classes}; give data with the model's classes")
    if len(names) < num_classes:
        raise ValueError(f"{path}: {len(names)} names but labels go up to {num_classes - 1}")
    return names


def read_split(root: str, split: str, image_root: str | None = None, num_classes: int | None = None) -> Split:
    """Read one split; image paths are relative to `image_root` (default: root)."""
    list_path = find_list(root, split)
    image_root = image_root or root
    paths, labels = [], []
    with open(list_path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            rel, _, label = line.rpartition(" ")
            if not rel or not label.lstrip("-").isdigit():
                raise ValueError(f"{list_path}:{n}: expected 'relative/path label', got {line!r}")
            paths.append(os.path.join(image_root, rel))
            labels.append(int(label))
    labels_arr = np.asarray(labels, dtype=np.int64)
    names = read_class_names(root, 0, model_classes=num_classes)  # checks the dataset's class count first
    k = num_classes or (len(names) if os.path.isfile(os.path.join(root, "classes.txt")) else 0) \
        or (int(labels_arr.max()) + 1 if labels else 0)
    if labels and num_classes and labels_arr.max() >= k:
        raise ValueError(f"{list_path}: labels go up to {int(labels_arr.max())}, so the dataset has at least "
                         f"{int(labels_arr.max()) + 1} classes, but the model has {k}")
    if k == 0 or labels_arr.min() < 0 or labels_arr.max() >= k:
        raise ValueError(f"{list_path}: labels must lie in 0..{k - 1}")
    return Split(paths, labels_arr, read_class_names(root, k))


def write_split(root: str, split: str, rel_paths: list[str], labels: list[int]) -> None:
    """Write `root/split.txt` in the list format."""
    with open(os.path.join(root, f"{split}.txt"), "w", encoding="utf-8") as f:
        f.writelines(f"{p} {int(y)}\n" for p, y in zip(rel_paths, labels))
