"""Detection post-processing: graph outputs at the model's input size → boxes (and masks) on the image,
COCO run-length masks, and the drawn picture."""
from __future__ import annotations

import cv2
import numpy as np

from ltdeploy.masks import MaskPatch, paste_masks
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


def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE of a binary mask (H, W): column-major run lengths, starting with zeros."""
    flat = np.asarray(mask, np.uint8).ravel(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def draw(rgb: np.ndarray, boxes: np.ndarray, captions: list[str], colours: np.ndarray,
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
