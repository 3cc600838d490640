"""Small long-tailed datasets that ship with the code: real digits (scikit-learn) and synthetic shapes.

Both write the ImageNet-LT list format: a long-tailed train split with an exponential profile
(n_c = n_max * R^(-c/(K-1)), R = n_max / n_min) and class-balanced val and test splits.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
from tqdm import tqdm

from training.data_lists import write_split


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


SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond", "star", "bar")
COLOURS = {"red": 0, "orange": 18, "yellow": 30, "green": 60, "cyan": 90, "blue": 115, "purple": 140,
           "magenta": 160}  # OpenCV hue (0-180)
TEXTURES = ("solid", "striped", "dotted", "checked")
ORIGINAL_TEXTURES = 2  # the first 128 classes (solid, striped) keep their selection order for any class count


def _shape_mask(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A float mask (size x size) of one shape at a random scale, position and rotation."""
    s = size * 4  # draw at 4x and shrink: smooth edges
    m = np.zeros((s, s), np.uint8)
    r = rng.uniform(0.22, 0.36) * s
    cx, cy = rng.uniform(0.38, 0.62, 2) * s
    ang = rng.uniform(0, 2 * np.pi)

    def poly(angles: np.ndarray, radii: np.ndarray | float) -> np.ndarray:
        a = angles + ang
        return np.stack([cx + radii * np.cos(a), cy + radii * np.sin(a)], 1).round().astype(np.int32)

    if shape == "circle":
        cv2.circle(m, (int(cx), int(cy)), int(r), 255, -1)
    elif shape == "ring":
        cv2.circle(m, (int(cx), int(cy)), int(r), 255, max(2, int(r * 0.35)))
    elif shape == "square":
        cv2.fillPoly(m, [poly(np.arange(4) * np.pi / 2 + np.pi / 4, r)], 255)
    elif shape == "diamond":
        cv2.fillPoly(m, [poly(np.arange(4) * np.pi / 2, np.array([r, r * 0.6, r, r * 0.6]))], 255)
    elif shape == "triangle":
        cv2.fillPoly(m, [poly(np.arange(3) * 2 * np.pi / 3, r * 1.1)], 255)
    elif shape == "star":
        cv2.fillPoly(m, [poly(np.arange(10) * np.pi / 5, np.tile([r * 1.1, r * 0.45], 5))], 255)
    elif shape == "cross":
        w = r * 0.32
        for base in (0.0, np.pi / 2):
            cv2.fillPoly(m, [poly(base + np.array([np.arctan2(w, r), np.pi - np.arctan2(w, r),
                                                    np.pi + np.arctan2(w, r), -np.arctan2(w, r)]),
                                  np.hypot(r, w))], 255)
    elif shape == "bar":
        cv2.fillPoly(m, [poly(np.array([0.2, np.pi - 0.2, np.pi + 0.2, -0.2]), r * 1.1)], 255)
    return cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def render_shape(shape: str, colour: str, texture: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One RGB uint8 image: a textured, colour-jittered shape on a noisy background."""
    mask = _shape_mask(shape, size, rng)[..., None]
    hue = (COLOURS[colour] + rng.normal(0, 4)) % 180
    fg_hsv = np.uint8([[[hue, rng.uniform(150, 255), rng.uniform(150, 255)]]])
    fg = cv2.cvtColor(fg_hsv, cv2.COLOR_HSV2RGB).astype(np.float32)[0, 0]
    fg_img = np.broadcast_to(fg, (size, size, 3)).copy()
    if texture == "striped":
        period = rng.uniform(3.0, 5.0)
        t = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:size, 0:size]
        stripes = (np.sin((xx * np.cos(t) + yy * np.sin(t)) * 2 * np.pi / period) > 0)[..., None]
        fg_img = np.where(stripes, fg_img, fg_img * 0.35)
    elif texture in ("dotted", "checked"):
        period = rng.uniform(4.0, 6.0)
        yy, xx = np.mgrid[0:size, 0:size] + rng.uniform(0, period, (2, 1, 1))
        if texture == "dotted":
            cell = np.hypot((xx % period) - period / 2, (yy % period) - period / 2) < period * 0.3
        else:
            cell = ((xx // (period / 2)) + (yy // (period / 2))) % 2 == 0
        fg_img = np.where(cell[..., None], fg_img, fg_img * 0.35)
    bg_level = rng.uniform(20, 200)
    bg = bg_level + rng.normal(0, 18, (size, size, 3)) + rng.normal(0, 25, (1, 1, 3))
    img = mask * fg_img + (1 - mask) * bg + rng.normal(0, 10, (size, size, 3))
    return np.clip(img, 0, 255).round().astype(np.uint8)


def shape_classes(num_classes: int) -> list[tuple[str, str, str]]:
    """The first num_classes (shape, colour, texture) triples, mixing all three attributes."""
    triples = [(s, c, t) for t in TEXTURES for c in COLOURS for s in SHAPES]
    if num_classes > len(triples):
        raise ValueError(f"shapes-lt has at most {len(triples)} classes, asked for {num_classes}")
    # fixed seeds: the class list is part of the dataset's definition
    base = ORIGINAL_TEXTURES * len(COLOURS) * len(SHAPES)
    first = np.random.default_rng(12345).permutation(base)
    rest = base + np.random.default_rng(54321).permutation(len(triples) - base)
    return [triples[i] for i in sorted(np.concatenate([first, rest])[:num_classes])]


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
