"""seg-lt: synthetic long-tailed segmentation scenes in the ADE20K layout.

Every scene has "stuff" (sky, ground, often a wall) that covers most pixels, plus a few objects whose
classes follow a long tail: object class r (by rank) appears in a training image with probability
p_max * R^(-r / (n - 1)) (R = --imbalance, 15) among at most 4 objects an image, and tail objects are
also drawn smaller, so tail classes hold few pixels (< 0.1%) in few images (about 10 of 400).
The val split draws objects uniformly, so every class can be measured.
Labels are single-channel PNGs; 255 marks the anti-aliased boundary pixels (ignored).
"""
from __future__ import annotations

import os

import cv2
import numpy as np
from tqdm import tqdm

from ltdeploy.datasets.seg_folders import IGNORE
from training.shapes import COLOURS, SHAPES, shape_mask

STUFF = ("sky", "ground", "wall")
# Object colours in rank order, neighbours far apart in hue (red 0, green 60, purple 140, yellow 30, ...).
SEG_COLOURS = ("red", "green", "purple", "yellow", "cyan", "magenta", "orange", "blue")


def latin_objects(count: int) -> list[str]:
    """Shape-colour object names in rank order, through a Latin square.

    Rank r gets colour r mod 8 and shape (r + r // 8) mod 8, so every colour and every shape occurs among the
    frequent classes and a tail class is a new combination of both, the way a rare ADE20K or LVIS class
    shares parts and textures with common ones.
    """
    n = len(SEG_COLOURS)
    if count > n * n:
        raise ValueError(f"at most {n * n} shape-colour objects, asked for {count}")
    return [f"{SHAPES[(r + r // n) % n]}-{SEG_COLOURS[r % n]}" for r in range(count)]


def seg_classes(num_classes: int) -> list[str]:
    """Stuff classes first, then shape-colour object classes in rank order."""
    most = len(STUFF) + len(SEG_COLOURS) ** 2
    if not len(STUFF) < num_classes <= most:
        raise ValueError(f"seg-lt has {len(STUFF) + 1}..{most} classes, asked for {num_classes}")
    return list(STUFF) + latin_objects(num_classes - len(STUFF))


def _noise(rng: np.random.Generator, size: int, base: tuple[float, float, float], sd: float) -> np.ndarray:
    return np.asarray(base, np.float32) + rng.normal(0, sd, (size, size, 3)).astype(np.float32)


def render_scene(size: int, objects: list[int], names: list[str],
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One RGB uint8 scene (size, size, 3) and its label map (size, size) uint8."""
    label = np.zeros((size, size), np.uint8)  # sky
    horizon = int(rng.uniform(0.35, 0.65) * size)
    label[horizon:] = 1  # ground
    img = np.where(label[..., None] == 0, _noise(rng, size, (110, 160, 225), 12),
                   _noise(rng, size, (120, 95, 60), 20))
    if rng.random() < 0.6:  # a wall block standing on the ground
        x0, x1 = sorted(rng.integers(0, size, 2))
        top = int(rng.uniform(0.1, 0.4) * size)
        if x1 - x0 > size // 8:
            label[top:horizon + 2, x0:x1] = 2
            bricks = ((np.arange(size)[:, None] // 4) % 2 == 0) * 25.0
            wall = _noise(rng, size, (150, 150, 150), 8) - bricks[..., None]
            img = np.where(label[..., None] == 2, wall, img)
    for c in objects:
        shape, colour = names[c].split("-")
        frac = 1.0 - (c - len(STUFF)) / max(1, len(names) - len(STUFF) - 1)
        obj = max(10, int(size * rng.uniform(0.16, 0.2 + 0.2 * frac)))
        mask = shape_mask(shape, obj, rng)
        y, x = rng.integers(0, size - obj + 1, 2)
        hue = (COLOURS[colour] + rng.normal(0, 4)) % 180
        fg = cv2.cvtColor(np.uint8([[[hue, rng.uniform(170, 255), rng.uniform(170, 255)]]]),
                          cv2.COLOR_HSV2RGB).astype(np.float32)[0, 0]
        region = img[y:y + obj, x:x + obj]
        img[y:y + obj, x:x + obj] = mask[..., None] * fg + (1 - mask[..., None]) * region
        lab = label[y:y + obj, x:x + obj]
        lab[mask >= 0.75] = c
        lab[(mask > 0.25) & (mask < 0.75)] = IGNORE
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).round().astype(np.uint8), label


def make_seg_lt(root: str, num_classes: int = 30, n_train: int = 400, n_val: int = 100, size: int = 64,
                imbalance: float = 15.0, seed: int = 0, p_max: float = 0.6) -> dict:
    """Write images/{train,val}/*.png, annotations/{train,val}/*.png and classes.txt."""
    rng = np.random.default_rng(seed)
    names = seg_classes(num_classes)
    n_obj = num_classes - len(STUFF)
    p = p_max * imbalance ** (-np.arange(n_obj) / max(1, n_obj - 1))
    pixels = np.zeros(num_classes, np.int64)
    with tqdm(total=n_train + n_val, desc="seg-lt", unit="img", leave=False) as bar:
        for split, n in (("train", n_train), ("val", n_val)):
            for folder in ("images", "annotations"):
                os.makedirs(os.path.join(root, folder, split), exist_ok=True)
            for i in range(n):
                if split == "train":
                    present = rng.permutation(np.flatnonzero(rng.random(n_obj) < p))  # any 4, not the 4 most frequent
                    objects = [len(STUFF) + int(r) for r in present[:4]]
                    if i < n_obj:  # every class appears at least once in training
                        objects = [len(STUFF) + i] + [c for c in objects if c != len(STUFF) + i][:3]
                else:
                    objects = [len(STUFF) + int(r) for r in rng.choice(n_obj, size=3, replace=False)]
                img, label = render_scene(size, objects, names, rng)
                if split == "train":
                    pixels += np.bincount(label[label != IGNORE], minlength=num_classes)
                for folder, arr in (("images", cv2.cvtColor(img, cv2.COLOR_RGB2BGR)), ("annotations", label)):
                    if not cv2.imwrite(os.path.join(root, folder, split, f"{i:05d}.png"), arr):
                        raise OSError(f"could not write {folder}/{split}/{i:05d}.png")
                bar.update()
    with open(os.path.join(root, "classes.txt"), "w", encoding="utf-8") as f:
        f.writelines(f"{n}\n" for n in names)
    share = pixels / pixels.sum()
    return {"classes": num_classes, "train_images": n_train, "val_images": n_val,
            "train_pixel_share": {n: round(float(s), 6) for n, s in zip(names, share)}}
