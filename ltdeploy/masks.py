"""Instance masks: the detector's M x M mask probabilities, each in its own box, pasted onto the image.

The exported graph stops at the mask head's (N, 1, M, M) probabilities; pasting happens here, at the
image's own pixels, for the exported model and for the PyTorch checkpoint alike. A graph that pastes
needs a loop whose output grows by one image-sized mask per detection, which TensorRT cannot build and
which held most of the time and memory of a 1203-class Mask R-CNN on the CPU.

The arithmetic is torchvision's `paste_masks_in_image`: the mask padded by one pixel on each side and
its box widened to match, truncated to integers, the padded mask resized bilinearly (half-pixel centres)
to the box's size, what falls outside the image cut off. Each pasted mask is kept as the patch its box
covers, so 300 detections on a large photo do not cost 300 image-sized arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PADDING = 1


@dataclass(frozen=True)
class MaskPatch:
    """One binary mask on an image of `image_size` (H, W): `bits` (h, w) placed at (`top`, `left`)."""

    bits: np.ndarray
    top: int
    left: int
    image_size: tuple[int, int]

    @property
    def area(self) -> int:
        """Pixels inside the mask."""
        return int(self.bits.sum())

    def rle(self) -> dict:
        """COCO uncompressed RLE of the mask on the whole image, without building the whole image: column-major
        runs of the H-tall strip the patch spans, the columns left and right of it added as background."""
        (ih, iw), (h, w) = self.image_size, self.bits.shape
        if h == 0 or w == 0:
            return {"size": [ih, iw], "counts": [ih * iw]}
        strip = np.zeros((ih, w), np.uint8)
        strip[self.top:self.top + h] = self.bits
        flat = strip.ravel(order="F")
        counts = np.diff(np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])).tolist()
        if flat[0] == 1:
            counts = [0] + counts
        counts[0] += self.left * ih
        trailing = (iw - self.left - w) * ih
        if len(counts) % 2:  # ends on background
            counts[-1] += trailing
        elif trailing:
            counts.append(trailing)
        return {"size": [ih, iw], "counts": counts}

    def full(self) -> np.ndarray:
        """The mask as a boolean (H, W) array."""
        out = np.zeros(self.image_size, bool)
        h, w = self.bits.shape
        out[self.top:self.top + h, self.left:self.left + w] = self.bits
        return out


def _expanded_boxes(boxes: np.ndarray, m: int) -> np.ndarray:
    """Each box widened about its centre by (M + 2 * PADDING) / M, truncated toward zero (as torch's int cast)."""
    scale = (m + 2 * PADDING) / m
    centre = (boxes[:, :2] + boxes[:, 2:]) * 0.5
    half = (boxes[:, 2:] - boxes[:, :2]) * 0.5 * scale
    return np.concatenate([centre - half, centre + half], axis=1).astype(np.int64)


def paste_masks(probs: np.ndarray, boxes: np.ndarray, image_size: tuple[int, int],
                threshold: float = 0.5) -> list[MaskPatch]:
    """Mask probabilities (N, [1,] M, M), one per box (N, 4) xyxy in the image's pixels → binary patches."""
    probs = np.asarray(probs, np.float32)
    probs = probs.reshape(len(probs), *probs.shape[-2:])
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if len(probs) != len(boxes):
        raise ValueError(f"{len(probs)} masks for {len(boxes)} boxes")
    ih, iw = image_size
    out = []
    if not len(probs):
        return out
    padded = np.pad(probs, ((0, 0), (PADDING, PADDING), (PADDING, PADDING)))
    for p, (x0, y0, x1, y1) in zip(padded, _expanded_boxes(boxes, probs.shape[-1])):
        w, h = max(int(x1 - x0 + 1), 1), max(int(y1 - y0 + 1), 1)
        top, left = max(int(y0), 0), max(int(x0), 0)
        bottom, right = min(int(y1) + 1, ih), min(int(x1) + 1, iw)
        if bottom <= top or right <= left:  # the box lies outside the image
            out.append(MaskPatch(np.zeros((0, 0), bool), 0, 0, (ih, iw)))
            continue
        resized = cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR)
        bits = resized[top - int(y0):bottom - int(y0), left - int(x0):right - int(x0)] >= threshold
        out.append(MaskPatch(bits, top, left, (ih, iw)))
    return out
