"""Decode image files into RGB uint8 arrays in their displayed orientation (EXIF applied), refusing what cannot
be read in full. This is the one decoder of training, evaluation, `val`, `quantize` and `predict`."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ltdeploy.errors import ImageError
from ltdeploy.image_header import DEFAULT_MAX_PIXELS, header_size

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def expand_sources(sources: list[str]) -> list[str]:
    """Expand directories into the images they hold, subfolders included (sorted); other paths pass through
    unchanged."""
    out: list[str] = []
    for src in sources:
        if os.path.isdir(src):
            found = sorted(str(p) for p in Path(src).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                           and p.is_file())
            if not found:
                raise ImageError(f"{src}: directory holds no images ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        else:
            out.append(src)
    return out


def _truncated_jpeg(data: np.ndarray) -> bool:
    # libjpeg decodes a cut-off JPEG with a grey bottom and only a warning; the end-of-image marker
    # (FF D9, possibly followed by padding) tells a complete file.
    tail = data[-64:].tobytes()
    return data[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in tail


def to_rgb8(img: np.ndarray, path: str = "<array>") -> np.ndarray:
    """Convert a decoded OpenCV image (gray, BGR, BGRA; 8 or 16 bit) to RGB uint8 (H, W, 3)."""
    if img.dtype == np.uint16:
        img = (img / 257.0 + 0.5).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageError(f"{path}: unsupported pixel type {img.dtype}; expected 8- or 16-bit")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    channels = img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    raise ImageError(f"{path}: unsupported number of channels {channels}; expected 1, 3 or 4")


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3); raise ImageError with a one-line reason otherwise
    (images of more than `max_pixels` pixels are refused before decoding; 0: no limit)."""
    path = str(path)
    if not os.path.exists(path):
        raise ImageError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ImageError(f"{path}: is a directory, expected an image file")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror})") from None
    return decode_image(data, path, max_pixels)


def _check_pixels(name: str, width: int, height: int, max_pixels: int) -> None:
    if max_pixels and width * height > max_pixels:
        raise ImageError(f"{name}: {width} x {height} = {width * height:,} pixels, above the limit of {max_pixels:,} "
                         "(raise it with --max-pixels, 0 for none)")


def decode_image(data: np.ndarray | bytes, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an encoded image (file bytes) to RGB uint8 (H, W, 3); ImageError with a one-line reason otherwise
    (more than `max_pixels` pixels: refused, from the header where the format allows, before decoding)."""
    data = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    if data.size == 0:
        raise ImageError(f"{name}: empty file")
    size = header_size(data)
    if size is not None:
        _check_pixels(name, *size, max_pixels)
    if _truncated_jpeg(data):
        raise ImageError(f"{name}: truncated JPEG (no end-of-image marker); re-export or re-download it")
    # ANYCOLOR | ANYDEPTH keeps grey and 16-bit images as they are and, unlike IMREAD_UNCHANGED, turns the
    # image by its EXIF orientation, so pixels, boxes and masks are in the frame the user sees (as cv2.imread,
    # PIL's exif_transpose and detectron2's read_image give it); an alpha channel is dropped, as to_rgb8 would
    img = cv2.imdecode(data, cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH)
    if img is None or img.size == 0:
        raise ImageError(f"{name}: not a decodable image (supported: {', '.join(IMAGE_SUFFIXES)})")
    _check_pixels(name, img.shape[1], img.shape[0], max_pixels)
    return to_rgb8(img, name)
