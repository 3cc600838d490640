"""Preprocessing description that travels with the model, and its one implementation (OpenCV + numpy).

Training's eval transform and the runtime both call `preprocess_image`, so they build the same tensor.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ltdeploy.errors import MetadataError

INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC,
                  "area": cv2.INTER_AREA}


@dataclass(frozen=True)
class PreprocessConfig:
    """How an RGB uint8 image becomes the float32 CHW tensor the model was trained on.

    The image is resized so that its short side is `resize_short` (or straight to `input_size` when
    `resize_short` is 0), centre-cropped to `input_size` (H, W), scaled to [0, 1], then normalised
    per channel with `mean` / `std` in `color_order` order.
    """

    input_size: tuple[int, int]
    resize_short: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    color_order: str = "RGB"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise MetadataError(f"preprocess.interpolation is {self.interpolation!r}; expected one of "
                                f"{', '.join(INTERPOLATIONS)}")
        if self.color_order not in ("RGB", "BGR"):
            raise MetadataError(f"preprocess.color_order is {self.color_order!r}; expected RGB or BGR")
        h, w = self.input_size
        if h <= 0 or w <= 0 or self.resize_short < 0:
            raise MetadataError(f"preprocess sizes must be positive, got input_size={self.input_size}, "
                                f"resize_short={self.resize_short}")
        if self.resize_short and self.resize_short < max(h, w):
            raise MetadataError(f"preprocess.resize_short={self.resize_short} is smaller than the crop "
                                f"{self.input_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise MetadataError(f"preprocess needs 3 means and 3 positive stds, got {self.mean}, {self.std}")

    def to_dict(self) -> dict:
        """Plain JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PreprocessConfig":
        """Parse strictly: every field required, unknown keys rejected."""
        fields = {"input_size", "resize_short", "interpolation", "mean", "std", "color_order"}
        if not isinstance(data, dict):
            raise MetadataError(f"preprocess must be an object, got {type(data).__name__}")
        missing, unknown = fields - data.keys(), data.keys() - fields
        if missing or unknown:
            raise MetadataError(f"preprocess: missing {sorted(missing)}, unknown {sorted(unknown)}")
        try:
            return cls(input_size=(int(data["input_size"][0]), int(data["input_size"][1])),
                       resize_short=int(data["resize_short"]), interpolation=str(data["interpolation"]),
                       mean=tuple(float(v) for v in data["mean"]), std=tuple(float(v) for v in data["std"]),
                       color_order=str(data["color_order"]))
        except (TypeError, ValueError, IndexError) as exc:
            raise MetadataError(f"preprocess is malformed: {exc}") from None


def preprocess_image(rgb: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Map an RGB uint8 image (H, W, 3) to a float32 tensor (3, input_h, input_w)."""
    out_h, out_w = cfg.input_size
    h, w = rgb.shape[:2]
    interp = INTERPOLATIONS[cfg.interpolation]
    if cfg.resize_short:
        scale = cfg.resize_short / min(h, w)
        new_w, new_h = max(out_w, round(w * scale)), max(out_h, round(h * scale))
    else:
        new_w, new_h = out_w, out_h
    if (new_h, new_w) != (h, w):
        rgb = cv2.resize(rgb, (new_w, new_h), interpolation=interp)
    top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
    rgb = rgb[top:top + out_h, left:left + out_w]
    if cfg.color_order == "BGR":
        rgb = rgb[:, :, ::-1]
    x = rgb.astype(np.float32) * np.float32(1 / 255.0)
    x -= np.asarray(cfg.mean, dtype=np.float32)
    x /= np.asarray(cfg.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess_batch(images: list[np.ndarray], cfg: PreprocessConfig) -> np.ndarray:
    """Stack preprocessed images into a float32 batch (N, 3, H, W)."""
    return np.stack([preprocess_image(im, cfg) for im in images]) if images else \
        np.zeros((0, 3, *cfg.input_size), np.float32)
