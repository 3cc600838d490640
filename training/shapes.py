"""The shape renderer the synthetic sets share: shapes x colours x textures drawn at any size, so that
shapes-lt (classification), seg-lt and det-lt (scenes) use the same class appearances."""
from __future__ import annotations

import cv2
import numpy as np

SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond", "star", "bar")
COLOURS = {"red": 0, "orange": 18, "yellow": 30, "green": 60, "cyan": 90, "blue": 115, "purple": 140,
           "magenta": 160}  # OpenCV hue (0-180)
TEXTURES = ("solid", "striped", "dotted", "checked")
ORIGINAL_TEXTURES = 2  # the first 128 classes (solid, striped) keep their selection order for any class count


def shape_mask(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
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
    mask = shape_mask(shape, size, rng)[..., None]
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
