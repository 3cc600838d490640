"""Segmentation post-processing: per-pixel outputs → label maps at the image's size, colours, overlays."""
from __future__ import annotations

import colorsys

import cv2
import numpy as np

from ltdeploy.errors import OutputError
from ltdeploy.files import atomic_path


def label_maps(outputs: dict[str, np.ndarray], output_name: str) -> np.ndarray:
    """Label maps (N, H, W) from a graph's `labels` output, or the argmax of its logits (N, K, H, W)."""
    out = outputs["labels"] if "labels" in outputs else outputs[output_name].argmax(1)
    return out.astype(np.uint8 if out.max(initial=0) < 256 else np.uint16)


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


def pixel_shares(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Fraction of the image's pixels predicted as each class (K,)."""
    return np.bincount(labels.ravel(), minlength=num_classes)[:num_classes] / max(labels.size, 1)


def write_png(path: str, image: np.ndarray) -> None:
    """Write a PNG atomically (temporary file in the same folder, then rename); RGB is converted to BGR."""
    with atomic_path(path, suffix=".png") as tmp:
        data = image[:, :, ::-1] if image.ndim == 3 else image
        if not cv2.imwrite(tmp, np.ascontiguousarray(data)):
            raise OutputError(f"{path}: could not write the PNG (is the folder writable?)")
