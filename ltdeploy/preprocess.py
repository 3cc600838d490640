"""Preprocessing description that travels with the model, its one implementation (OpenCV + numpy), and the
inverse mapping from model coordinates back to the image's pixels.

Training, evaluation, export parity and the runtime all call `preprocess_image` (and, for detection,
`Geometry` to move boxes and masks between the image and the model input), so they see the same tensors.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ltdeploy.errors import MetadataError

INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC,
                  "area": cv2.INTER_AREA}
# crop: short side to `resize_short`, centre crop to `input_size` (classification, timm's eval transform);
# stretch: straight to `input_size` (segmentation); fit: short side to `resize_short`, long side at most
# `max_size`, aspect kept, no crop and no padding (detection: the output size follows the image).
RESIZE_MODES = ("crop", "stretch", "fit")
LAYOUTS = ("NCHW", "NHWC")
FIT_MIN_SIDE = 16  # the smallest side a TensorRT profile of a fitted model takes (a panorama at 1333 / 80)


@dataclass(frozen=True)
class Geometry:
    """Where one image lands on the model input: resized to `resized` (h, w), then the window at `offset`
    (top, left) of size `model_size` (h, w) is kept. Maps boxes (x0, y0, x1, y1) and masks both ways."""

    image_size: tuple[int, int]
    resized: tuple[int, int]
    offset: tuple[int, int]
    model_size: tuple[int, int]

    @property
    def scale(self) -> np.ndarray:
        """Per-axis factors image → resized, as (sx, sy, sx, sy) for xyxy boxes."""
        (h, w), (rh, rw) = self.image_size, self.resized
        return np.array([rw / w, rh / h, rw / w, rh / h])

    def _shift(self) -> np.ndarray:
        top, left = self.offset
        return np.array([left, top, left, top], np.float64)

    def boxes_to_model(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes (N, 4) xyxy in image pixels → model-input pixels, clipped to the model input."""
        h, w = self.model_size
        out = np.asarray(boxes, np.float64).reshape(-1, 4) * self.scale - self._shift()
        return np.clip(out, 0, [w, h, w, h])

    def boxes_to_image(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes (N, 4) xyxy in model-input pixels → image pixels, clipped to the image."""
        h, w = self.image_size
        out = (np.asarray(boxes, np.float64).reshape(-1, 4) + self._shift()) / self.scale
        return np.clip(out, 0, [w, h, w, h])

    def masks_to_model(self, masks: np.ndarray) -> np.ndarray:
        """Binary masks (N, H, W) uint8 at the image's size → (N, h, w) at the model input (nearest)."""
        (rh, rw), (top, left), (h, w) = self.resized, self.offset, self.model_size
        if len(masks) == 0:
            return np.zeros((0, h, w), np.uint8)
        out = [cv2.resize(m, (rw, rh), interpolation=cv2.INTER_NEAREST) if m.shape != (rh, rw) else m
               for m in masks]
        return np.ascontiguousarray(np.stack(out)[:, top:top + h, left:left + w])

    def labels_to_image(self, labels: np.ndarray) -> np.ndarray:
        """A label map (h, w) at the model input → (H, W) at the image's size (nearest neighbour)."""
        (ih, iw), (rh, rw), (top, left) = self.image_size, self.resized, self.offset
        if labels.shape != (rh, rw) or (top, left) != (0, 0):
            canvas = np.zeros((rh, rw), labels.dtype)
            canvas[top:top + labels.shape[0], left:left + labels.shape[1]] = labels
            labels = canvas
        if labels.shape == (ih, iw):
            return labels
        return cv2.resize(labels, (iw, ih), interpolation=cv2.INTER_NEAREST)


@dataclass(frozen=True)
class PreprocessConfig:
    """How an RGB uint8 image becomes the float32 CHW tensor the model was trained on.

    `resize` picks the geometry (see RESIZE_MODES); the result is scaled to [0, 1], then normalised per
    channel with `mean` / `std` in `color_order` order. For `fit`, `input_size` is the largest input the
    model takes, (max_size, max_size); any smaller height and width occur. `layout` is the input's axis order:
    NCHW (PyTorch's), or NHWC (Keras models through tf2onnx).
    """

    input_size: tuple[int, int]
    resize_short: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    color_order: str = "RGB"
    resize: str = ""  # "" → crop when resize_short > 0, else stretch
    max_size: int = 0
    layout: str = "NCHW"

    def __post_init__(self) -> None:
        if not self.resize:
            object.__setattr__(self, "resize", "crop" if self.resize_short else "stretch")
        if self.resize not in RESIZE_MODES:
            raise MetadataError(f"preprocess.resize is {self.resize!r}; expected one of {', '.join(RESIZE_MODES)}")
        if self.interpolation not in INTERPOLATIONS:
            raise MetadataError(f"preprocess.interpolation is {self.interpolation!r}; expected one of "
                                f"{', '.join(INTERPOLATIONS)}")
        if self.layout not in LAYOUTS:
            raise MetadataError(f"preprocess.layout is {self.layout!r}; expected {' or '.join(LAYOUTS)}")
        if self.color_order not in ("RGB", "BGR"):
            raise MetadataError(f"preprocess.color_order is {self.color_order!r}; expected RGB or BGR")
        h, w = self.input_size
        if h <= 0 or w <= 0 or self.resize_short < 0 or self.max_size < 0:
            raise MetadataError(f"preprocess sizes must be positive, got input_size={self.input_size}, "
                                f"resize_short={self.resize_short}, max_size={self.max_size}")
        if self.resize == "crop" and self.resize_short < max(h, w):
            raise MetadataError(f"preprocess.resize_short={self.resize_short} is smaller than the crop "
                                f"{self.input_size}")
        if self.resize == "stretch" and (self.resize_short or self.max_size):
            raise MetadataError("preprocess: stretch resizes straight to input_size (resize_short 0, max_size 0)")
        if self.resize == "fit" and not (0 < self.resize_short <= self.max_size and (h, w) == (self.max_size,) * 2):
            raise MetadataError(f"preprocess: fit needs 0 < resize_short <= max_size and input_size = (max_size, "
                                f"max_size), got {self.resize_short}, {self.max_size}, {self.input_size}")
        if self.resize != "fit" and self.max_size:
            raise MetadataError("preprocess.max_size is for resize 'fit' only")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise MetadataError(f"preprocess needs 3 means and 3 positive stds, got {self.mean}, {self.std}")

    @classmethod
    def fit(cls, min_size: int, max_size: int, interpolation: str = "bilinear",
            mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
            std: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> "PreprocessConfig":
        """Short side to `min_size`, long side at most `max_size`, aspect ratio kept (detection)."""
        return cls(input_size=(max_size, max_size), resize_short=min_size, interpolation=interpolation,
                   mean=mean, std=std, resize="fit", max_size=max_size)

    def geometry(self, height: int, width: int) -> Geometry:
        """Where an image of (height, width) lands on the model input."""
        out_h, out_w = self.input_size
        if self.resize == "stretch":
            return Geometry((height, width), (out_h, out_w), (0, 0), (out_h, out_w))
        if self.resize == "fit":
            scale = min(self.resize_short / min(height, width), self.max_size / max(height, width))
            new_h = min(self.max_size, max(1, round(height * scale)))
            new_w = min(self.max_size, max(1, round(width * scale)))
            return Geometry((height, width), (new_h, new_w), (0, 0), (new_h, new_w))
        scale = self.resize_short / min(height, width)
        new_w, new_h = max(out_w, round(width * scale)), max(out_h, round(height * scale))
        return Geometry((height, width), (new_h, new_w), ((new_h - out_h) // 2, (new_w - out_w) // 2),
                        (out_h, out_w))

    def shape_range(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """(smallest, typical, largest) model-input (h, w): one size except for `fit`, whose typical input is
        a 4:3 landscape photo."""
        if self.resize != "fit":
            return (self.input_size,) * 3
        short, long = self.resize_short, self.max_size
        return (FIT_MIN_SIDE, FIT_MIN_SIDE), (short, min(long, round(short * 4 / 3))), (long, long)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (`layout` only where it is NHWC, so NCHW descriptions read as they always did)."""
        out = asdict(self)
        if self.layout == "NCHW":
            del out["layout"]
        return out

    @classmethod
    def from_dict(cls, data: dict, legacy: bool = False) -> "PreprocessConfig":
        """Parse strictly: every field required, unknown keys rejected (`legacy`: the fields of
        ltdeploy.model/1, which had no `resize` / `max_size`)."""
        fields = {"input_size", "resize_short", "interpolation", "mean", "std", "color_order"}
        if not legacy:
            fields |= {"resize", "max_size"}
        if not isinstance(data, dict):
            raise MetadataError(f"preprocess must be an object, got {type(data).__name__}")
        missing, unknown = fields - data.keys(), data.keys() - fields - {"layout"}
        if missing or unknown:
            raise MetadataError(f"preprocess: missing {sorted(missing)}, unknown {sorted(unknown)}")
        try:
            return cls(input_size=(int(data["input_size"][0]), int(data["input_size"][1])),
                       resize_short=int(data["resize_short"]), interpolation=str(data["interpolation"]),
                       mean=tuple(float(v) for v in data["mean"]), std=tuple(float(v) for v in data["std"]),
                       color_order=str(data["color_order"]), resize=str(data.get("resize", "")),
                       max_size=int(data.get("max_size", 0)), layout=str(data.get("layout", "NCHW")))
        except (TypeError, ValueError, IndexError) as exc:
            raise MetadataError(f"preprocess is malformed: {exc}") from None


def resize_to(rgb: np.ndarray, geo: Geometry, cfg: PreprocessConfig) -> np.ndarray:
    """The image resized and cropped onto the model input (uint8, still HWC)."""
    (rh, rw), (top, left), (h, w) = geo.resized, geo.offset, geo.model_size
    if rgb.shape[:2] != (rh, rw):
        rgb = cv2.resize(rgb, (rw, rh), interpolation=INTERPOLATIONS[cfg.interpolation])
    return rgb[top:top + h, left:left + w]


def preprocess_image(rgb: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Map an RGB uint8 image (H, W, 3) to a float32 tensor (3, h, w): (input_h, input_w) for crop and
    stretch, the fitted size for fit; (h, w, 3) for an NHWC model."""
    x = normalize(resize_to(rgb, cfg.geometry(*rgb.shape[:2]), cfg), cfg)
    return np.ascontiguousarray(x.transpose(1, 2, 0)) if cfg.layout == "NHWC" else x


def normalize(rgb: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """The value mapping alone (channel order, scale, mean, std) of an RGB uint8 image already at its model
    size (H, W, 3) → float32 (3, H, W); training augmentation does the geometry before it."""
    if cfg.color_order == "BGR":
        rgb = rgb[:, :, ::-1]
    x = rgb.astype(np.float32) * np.float32(1 / 255.0)
    x -= np.asarray(cfg.mean, dtype=np.float32)
    x /= np.asarray(cfg.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess_batch(images: list[np.ndarray], cfg: PreprocessConfig) -> np.ndarray:
    """Stack preprocessed images into a float32 batch (N, 3, H, W) (crop and stretch: one size for all)."""
    if cfg.resize == "fit":
        raise ValueError("fitted images differ in size: preprocess them one at a time")
    if not images:
        return np.zeros((0, *cfg.input_size, 3) if cfg.layout == "NHWC" else (0, 3, *cfg.input_size), np.float32)
    return np.stack([preprocess_image(im, cfg) for im in images])
