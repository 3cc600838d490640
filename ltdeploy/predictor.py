"""Predictor: images → preprocessing (from the model's description) → backend → result objects.

Decoding and preprocessing run in a small thread pool (OpenCV releases the GIL) so that the next
batch is being prepared while the engine runs the current one.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterable, Iterator

import numpy as np

from ltdeploy.backends import Backend, load_backend
from ltdeploy.classify import softmax, topk
from ltdeploy.errors import ImageError
from ltdeploy.image_io import read_image
from ltdeploy.preprocess import preprocess_image
from ltdeploy.results import Classification, Failure, TopClass


class Predictor:
    """A loaded model ready to classify image files or arrays."""

    def __init__(self, engine: str | Backend, device: str = "cpu", batch_size: int = 16, threads: int = 0,
                 workers: int = 2) -> None:
        self.backend = load_backend(engine, device=device, threads=threads) if isinstance(engine, str) else engine
        self.description = self.backend.description
        self.batch_size = max(1, batch_size)
        self.workers = max(1, workers)
        self._groups = self.description.groups

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated logits (N, K) for a preprocessed float32 batch (N, 3, H, W)."""
        name = self.description.input_name
        return self.backend.run({name: batch})[self.description.output_names[0]]

    def _load(self, path: str) -> np.ndarray | ImageError:
        try:
            return preprocess_image(read_image(path), self.description.preprocess)
        except ImageError as exc:
            return exc

    def _results(self, paths: list[str], logits: np.ndarray, k: int) -> list[Classification]:
        names = self.description.class_names
        idx, probs = topk(softmax(logits), k)
        return [Classification(p, [TopClass(int(i), names[i], float(q), self._groups[i])
                                   for i, q in zip(row_i, row_p)])
                for p, row_i, row_p in zip(paths, idx, probs)]

    def predict(self, paths: Iterable[str], k: int = 5) -> Iterator[Classification | Failure]:
        """Yield one Classification or Failure per path, in input order."""
        pending: deque[tuple[str, Future]] = deque()
        path_iter = iter(paths)
        with ThreadPoolExecutor(self.workers) as pool:
            def refill() -> None:
                while len(pending) < 2 * self.batch_size:
                    p = next(path_iter, None)
                    if p is None:
                        return
                    pending.append((p, pool.submit(self._load, p)))

            refill()
            while pending:
                order: list[tuple[str, np.ndarray | ImageError]] = []
                while pending and sum(not isinstance(x, ImageError) for _, x in order) < self.batch_size:
                    p, fut = pending.popleft()
                    order.append((p, fut.result()))
                refill()  # decoding of the next batch overlaps with this one's inference
                good = [(p, x) for p, x in order if not isinstance(x, ImageError)]
                done = iter(self._results([p for p, _ in good], self.logits(np.stack([x for _, x in good])), k)
                            if good else ())
                for p, x in order:
                    yield Failure(p, str(x)) if isinstance(x, ImageError) else next(done)
