"""Small training sets held in memory: each image decoded once and kept as decoded (uint8, its own size), then
mapped by a view (the runtime's eval preprocessing, or the recipe's augmentation) every time it is fetched, so
augmentation sees the decoded image and evaluation the runtime's tensors. Sets whose decoded images would not
fit the budget stream from disk in worker processes instead."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from torch.utils.data import Dataset
from tqdm import tqdm

from ltdeploy.image_header import header_size
from training.core.bad_images import BadImage, BadImageLog

PRELOAD_LIMIT_BYTES = 2 << 30  # decoded images up to this size are kept in memory
HEADER_BYTES = 1 << 16  # enough for the size fields of PNG, BMP, WebP and TIFF, and of JPEG after most EXIF blocks


def decoded_bytes(paths: Sequence[str], fallback: tuple[int, int], per_pixel: int = 3) -> int:
    """What the images take decoded: height x width x `per_pixel` bytes each, from the file headers
    (`fallback` (h, w) for a file whose header does not say, or that cannot be read)."""
    total = 0
    for path in paths:
        try:
            with open(path, "rb") as f:
                size = header_size(f.read(HEADER_BYTES))
        except OSError:
            size = None
        h, w = size or fallback
        total += h * w * per_pixel
    return total


def fits_in_memory(paths: Sequence[str], fallback: tuple[int, int], per_pixel: int = 3) -> bool:
    """Whether the decoded images stay under PRELOAD_LIMIT_BYTES."""
    return decoded_bytes(paths, fallback, per_pixel) < PRELOAD_LIMIT_BYTES


class InMemory(Dataset):
    """Decoded items (tuples) of the readable images, each mapped by `view(*item)` when fetched; `skipped`
    counts the unreadable images left out."""

    def __init__(self, items: list[tuple], view: Callable, skipped: int = 0) -> None:
        self.items, self.view, self.skipped = items, view, skipped

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.view(*self.items[i])


def decode_all(count: int, decode: Callable[[int], tuple | BadImage], view: Callable, desc: str) -> InMemory:
    """Items 0..count-1 decoded in four threads (OpenCV releases the GIL) under a progress bar; unreadable ones
    (BadImage) are left out, the first named on stderr."""
    with ThreadPoolExecutor(4) as pool:
        items = list(tqdm(pool.map(decode, range(count)), total=count, desc=desc, unit="img", leave=False))
    log = BadImageLog()
    log.add([item for item in items if isinstance(item, BadImage)])
    return InMemory([item for item in items if not isinstance(item, BadImage)], view, log.count)
