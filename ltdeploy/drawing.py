"""What ltdeploy draws and writes for people to look at: class colours, segmentation overlays, detection
pictures (masks tinted, boxes, captions), and PNG files written atomically."""
from __future__ import annotations

import colorsys

import cv2
import numpy as np

from ltdeploy.errors import OutputError
from ltdeploy.files import atomic_path
from ltdeploy.masks import MaskPatch


def palette(num_classes: int) -> np.ndarray:
    """A fixed RGB colour per class (K, 3) uint8: hues spread by the golden ratio, so neighbours differ."""
    colours = []
    for i in range(num_classes):
        hue = (i * 0.618033988749895) % 1.0
        sat, val = (0.65, 0.95) if i % 2 == 0 else (0.9, 0.75)
        colours.append([round(255 * c) for c in colorsys.hsv_to_rgb(hue, sat, val)])
    return np.asarray(colours, np.uint8)


def overlay(rgb: np.ndarray, labels: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The image blended with the class colours (RGB uint8), 1-pixel class boundaries drawn in white."""
    out = cv2.addWeighted(rgb, 1 - alpha, colours[labels], alpha, 0)
    edges = np.zeros(labels.shape, bool)
    edges[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edges[1:, :] |= labels[1:, :] != labels[:-1, :]
    out[edges] = 255
    return out


def draw_detections(rgb: np.ndarray, boxes: np.ndarray, captions: list[str], colours: np.ndarray,
         masks: list[MaskPatch] | None = None, alpha: float = 0.45) -> np.ndarray:
    """The image with each detection's mask tinted, its box outlined and its caption on a filled tag."""
    out = rgb.copy()
    for m, c in zip(masks or [], colours):
        h, w = m.bits.shape
        region = out[m.top:m.top + h, m.left:m.left + w]
        region[m.bits] = ((1 - alpha) * region[m.bits] + alpha * c).astype(np.uint8)
    scale = max(0.35, min(out.shape[:2]) / 640)
    thick = max(1, round(scale * 2))
    for (x0, y0, x1, y1), text, c in zip(boxes.round().astype(int), captions, colours):
        colour = tuple(int(v) for v in c)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thick)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = max(y0, th + base)
        tx = max(0, min(x0, out.shape[1] - tw))  # keep the tag inside the image
        cv2.rectangle(out, (tx, ty - th - base), (tx + tw, ty), colour, -1)
        cv2.putText(out, text, (tx, ty - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def write_png(path: str, image: np.ndarray) -> None:
    """Write a PNG atomically (temporary file in the same folder, then rename); RGB is converted to BGR."""
    with atomic_path(path, suffix=".png") as tmp:
        data = image[:, :, ::-1] if image.ndim == 3 else image
        if not cv2.imwrite(tmp, np.ascontiguousarray(data)):
            raise OutputError(f"{path}: could not write the PNG (is the folder writable?)")
