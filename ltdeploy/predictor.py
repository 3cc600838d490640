"""Predictor: images → preprocessing (from the model's description) → backend → the task's post-processing
(`ltdeploy.tasks`) → result objects (Classification, Segmentation or Detections), which save themselves.

Decoding and preprocessing run in a small thread pool (OpenCV releases the GIL) so that the next
batch is being prepared while the engine runs the current one.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterable, Iterator

import numpy as np

from ltdeploy.backends import Backend, load_backend
from ltdeploy.errors import ImageError
from ltdeploy.image_io import DEFAULT_MAX_PIXELS, read_image
from ltdeploy.postprocess import Loaded, PostOptions
from ltdeploy.preprocess import preprocess_image
from ltdeploy.results import Classification, Detections, Failure, Segmentation
from ltdeploy.tasks import postprocess_class

Result = Classification | Segmentation | Detections


class Predictor:
    """A loaded model ready to classify, segment or detect in image files, as its description says."""

    def __init__(self, engine: str | Backend, device: str = "auto", batch_size: int = 16, threads: int = 0,
                 workers: int = 2, score_threshold: float = 0.25, max_detections: int = 100,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.backend = load_backend(engine, device=device, threads=threads) if isinstance(engine, str) else engine
        self.description = self.backend.description
        self.batch_size = max(1, batch_size)
        self.workers = max(1, workers)
        self.max_pixels = max_pixels
        self.post = postprocess_class(self.description.task)(self.description,
                                                             PostOptions(score_threshold, max_detections))

    def outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """All graph outputs for a preprocessed float32 batch (N, 3, H, W)."""
        return self.backend.run({self.description.input_name: batch})

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated logits (N, K[, H, W]) for a preprocessed float32 batch (N, 3, H, W)."""
        return self.outputs(batch)[self.description.output_names[0]]

    def _prepare(self, rgb: np.ndarray) -> Loaded:
        return (rgb if self.post.keeps_image else None), preprocess_image(rgb, self.description.preprocess)

    def _load(self, path: str) -> Loaded | ImageError:
        try:
            return self._prepare(read_image(path, self.max_pixels))
        except ImageError as exc:
            return exc

    def predict_arrays(self, names: list[str], images: list[np.ndarray], k: int = 5) -> list[Result]:
        """Results for decoded RGB uint8 images (a server's batch), in one engine call where the task allows."""
        return self.post.results(names, [self._prepare(rgb) for rgb in images], self.outputs, k)

    def predict(self, paths: Iterable[str], k: int = 5) -> Iterator[Result | Failure]:
        """Yield one result (Classification, Segmentation or Detections) or Failure per path, in input order."""
        paths = list(paths)
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
                order: list[tuple[str, Loaded | ImageError]] = []
                while pending and sum(not isinstance(x, ImageError) for _, x in order) < self.batch_size:
                    p, fut = pending.popleft()
                    order.append((p, fut.result()))
                refill()  # decoding of the next batch overlaps with this one's inference
                good = [(p, x) for p, x in order if not isinstance(x, ImageError)]
                done = iter(self.post.results([p for p, _ in good], [x for _, x in good], self.outputs, k)
                            if good else ())
                for p, x in order:
                    yield Failure(p, str(x)) if isinstance(x, ImageError) else next(done)
