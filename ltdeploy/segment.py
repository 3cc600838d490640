"""Segmentation post-processing: per-pixel outputs → label maps, and the share of each class."""
from __future__ import annotations

import numpy as np


def label_maps(outputs: dict[str, np.ndarray], output_name: str) -> np.ndarray:
    """Label maps (N, H, W) from a graph's `labels` output, or the argmax of its logits (N, K, H, W)."""
    out = outputs["labels"] if "labels" in outputs else outputs[output_name].argmax(1)
    return out.astype(np.uint8 if out.max(initial=0) < 256 else np.uint16)


def pixel_shares(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Fraction of the image's pixels predicted as each class (K,)."""
    return np.bincount(labels.ravel(), minlength=num_classes)[:num_classes] / max(labels.size, 1)
