"""Small long-tailed datasets that ship with the code: real digits (scikit-learn) and synthetic shapes.

Both write the ImageNet-LT list format: a long-tailed train split with an exponential profile
(n_c = n_max * R^(-c/(K-1)), R = n_max / n_min) and class-balanced val and test splits.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
from tqdm import tqdm

from ltdeploy.datasets.lists import write_split
from training.shapes import render_shape, shape_classes


def long_tail_counts(num_classes: int, n_max: int, imbalance: float) -> list[int]:
    """Exponential profile from n_max down to n_max / imbalance (at least 1 image per class)."""
    c = np.arange(num_classes)
    return [max(1, int(round(n_max * imbalance ** (-i / max(1, num_classes - 1))))) for i in c]


def _write(root: str, split: str, images: list[np.ndarray], labels: list[int]) -> None:
    folder = os.path.join(root, "images", split)
    os.makedirs(folder, exist_ok=True)
    rel = []
    for i, img in enumerate(images):
        name = f"images/{split}/{i:05d}.png"
        bgr = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(os.path.join(root, name), bgr):
            raise OSError(f"could not write {name}")
        rel.append(name)
    write_split(root, split, rel, labels)


def _write_classes(root: str, names: list[str]) -> None:
    with open(os.path.join(root, "classes.txt"), "w", encoding="utf-8") as f:
        f.writelines(f"{n}\n" for n in names)


def make_digits_lt(root: str, imbalance: float = 50.0, seed: int = 0, n_val: int = 20,
                   n_test: int = 50) -> dict:
    """scikit-learn's 1,797 handwritten digits (8x8, 16 grey levels) as PNGs, long-tailed train split.

    Which digit is the head class is drawn from the seed. Returns a summary dict.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    order = rng.permutation(10)  # order[r] = the digit with the r-th largest train count
    per_class = {d: rng.permutation(np.flatnonzero(digits.target == d)) for d in range(10)}
    n_max = min(len(v) for v in per_class.values()) - n_val - n_test
    counts = long_tail_counts(10, n_max, imbalance)
    splits: dict[str, tuple[list, list]] = {"train": ([], []), "val": ([], []), "test": ([], [])}
    for rank, d in enumerate(order):
        idx = per_class[d]
        for split, sel in (("test", idx[:n_test]), ("val", idx[n_test:n_test + n_val]),
                           ("train", idx[n_test + n_val:n_test + n_val + counts[rank]])):
            splits[split][0].extend(images[i] for i in sel)
            splits[split][1].extend([int(d)] * len(sel))
    os.makedirs(root, exist_ok=True)
    for split, (ims, labels) in splits.items():
        perm = rng.permutation(len(ims))
        _write(root, split, [ims[i] for i in perm], [labels[i] for i in perm])
    _write_classes(root, [str(d) for d in range(10)])
    return {"classes": 10, "train_counts": {str(d): counts[r] for r, d in enumerate(order)},
            "val_per_class": n_val, "test_per_class": n_test}


def make_shapes_lt(root: str, imbalance: float = 100.0, seed: int = 0, num_classes: int = 50,
                   n_max: int = 200, n_val: int = 10, n_test: int = 20, size: int = 32) -> dict:
    """Synthetic shape x colour x texture classes; long-tailed train split, balanced val/test."""
    rng = np.random.default_rng(seed)
    classes = shape_classes(num_classes)
    order = rng.permutation(num_classes)  # order[r] = class with the r-th largest train count
    counts = long_tail_counts(num_classes, n_max, imbalance)
    os.makedirs(root, exist_ok=True)
    total = sum(counts) + num_classes * (n_val + n_test)
    with tqdm(total=total, desc="shapes-lt", unit="img", leave=False) as bar:
        for split in ("train", "val", "test"):
            labels = []
            for rank, c in enumerate(order):
                n = counts[rank] if split == "train" else (n_val if split == "val" else n_test)
                labels.extend([int(c)] * n)
            labels = [labels[i] for i in rng.permutation(len(labels))]
            images = []
            for y in labels:
                images.append(render_shape(*classes[y], size, rng))
                bar.update()
            _write(root, split, images, labels)
    _write_classes(root, ["-".join(t) for t in classes])
    return {"classes": num_classes, "train_counts": {"-".join(classes[c]): counts[r] for r, c in enumerate(order)},
            "val_per_class": n_val, "test_per_class": n_test}
