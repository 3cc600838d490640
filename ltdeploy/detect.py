"""Detection post-processing: graph outputs at the model's input size → boxes on the image, and each box's
mask pasted at the image's pixels."""
from __future__ import annotations

import numpy as np

from ltdeploy.masks import paste_masks
from ltdeploy.preprocess import Geometry


def select(outputs: dict[str, np.ndarray], score_threshold: float, max_detections: int) -> dict[str, np.ndarray]:
    """Detections with score >= threshold, highest first, at most `max_detections`."""
    scores = outputs["scores"]
    keep = np.flatnonzero(scores >= score_threshold)
    keep = keep[np.argsort(-scores[keep], kind="stable")][:max_detections]
    return {k: v[keep] for k, v in outputs.items()}


def to_image(dets: dict[str, np.ndarray], geometry: Geometry) -> dict:
    """Boxes from model-input pixels to the image's pixels; each box's mask probabilities (N, 1, M, M), if any,
    pasted into it at the image's own resolution (a list of MaskPatch)."""
    out = dict(dets, boxes=geometry.boxes_to_image(dets["boxes"]))
    if "masks" in dets:
        out["masks"] = paste_masks(dets["masks"], out["boxes"], geometry.image_size)
    return out
