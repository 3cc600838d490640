"""Decoded, preprocessed image batches for evaluation and calibration, decoded in threads and in order."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, TypeVar

import numpy as np

from ltdeploy.image_io import read_image
from ltdeploy.preprocess import PreprocessConfig, preprocess_image

T = TypeVar("T")
L = TypeVar("L")


def in_batches(items: list[T], batch_size: int, load: Callable[[T], L], workers: int = 2) -> Iterator[list[L]]:
    """Consecutive batches of loaded items, in order; items are loaded in threads, a batch ahead."""
    chunks = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending = [pool.map(load, chunk) for chunk in chunks[:2]]
        for k in range(len(chunks)):
            if k + 2 < len(chunks):
                pending.append(pool.map(load, chunks[k + 2]))
            yield list(pending[k])


def model_input(path: str, cfg: PreprocessConfig) -> np.ndarray:
    """One image file as the runtime feeds it to the model (3, h, w) float32."""
    return preprocess_image(read_image(path), cfg)
