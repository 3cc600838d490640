"""Predictor: images → preprocessing (from the model's description) → backend → result objects
(Classification; Segmentation with its overlay and label PNGs, or Detections with the drawn image,
written to `save_dir`, one file name per input: see `outputs.output_stems`).

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
from ltdeploy.detect import select, to_image
from ltdeploy.drawing import draw_detections, overlay, palette, write_png
from ltdeploy.errors import ImageError
from ltdeploy.image_io import DEFAULT_MAX_PIXELS, read_image
from ltdeploy.outputs import output_stems
from ltdeploy.preprocess import preprocess_image
from ltdeploy.results import Classification, ClassShare, DetectedObject, Detections, Failure, Segmentation, TopClass
from ltdeploy.segment import label_maps, pixel_shares

Loaded = tuple[np.ndarray | None, np.ndarray]  # (the RGB image when the task draws on it, model input)


class Predictor:
    """A loaded model ready to classify, segment or detect in image files."""

    def __init__(self, engine: str | Backend, device: str = "auto", batch_size: int = 16, threads: int = 0,
                 workers: int = 2, save_dir: str | None = None, score_threshold: float = 0.25,
                 max_detections: int = 100, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.backend = load_backend(engine, device=device, threads=threads) if isinstance(engine, str) else engine
        self.description = self.backend.description
        self.batch_size = max(1, batch_size)
        self.workers = max(1, workers)
        self.save_dir = save_dir
        self._groups = self.description.groups
        self._segment = self.description.task == "segmentation"
        self._detect = self.description.task == "detection"
        self._colours = palette(self.description.num_classes) if self._segment or self._detect else None
        self.score_threshold, self.max_detections = score_threshold, max_detections
        self.max_pixels = max_pixels
        self._stems: dict[str, str] = {}
        ids = self.description.class_ids
        self._label_values = np.asarray(ids, np.uint8 if max(ids) < 256 else np.uint16)

    def outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """All graph outputs for a preprocessed float32 batch (N, 3, H, W)."""
        return self.backend.run({self.description.input_name: batch})

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated logits (N, K[, H, W]) for a preprocessed float32 batch (N, 3, H, W)."""
        return self.outputs(batch)[self.description.output_names[0]]

    def _prepare(self, rgb: np.ndarray) -> Loaded:
        return (rgb if self._segment or self._detect else None), preprocess_image(rgb, self.description.preprocess)

    def _load(self, path: str) -> Loaded | ImageError:
        try:
            return self._prepare(read_image(path, self.max_pixels))
        except ImageError as exc:
            return exc

    def predict_arrays(self, names: list[str], images: list[np.ndarray],
                       k: int = 5) -> list[Classification | Segmentation | Detections]:
        """Results for decoded RGB uint8 images (a server's batch), in one engine call where the task allows."""
        self._stems = output_stems(names, self.save_dir) if self.save_dir else {}
        return self._results(names, [self._prepare(rgb) for rgb in images], k)

    def _classify(self, paths: list[str], logits: np.ndarray, k: int) -> list[Classification]:
        names = self.description.class_names
        idx, probs = topk(softmax(logits), k)
        return [Classification(p, [TopClass(int(i), names[i], float(q), self._groups[i])
                                   for i, q in zip(row_i, row_p)])
                for p, row_i, row_p in zip(paths, idx, probs)]

    def _segment_one(self, path: str, rgb: np.ndarray, labels: np.ndarray) -> Segmentation:
        labels = self.description.preprocess.geometry(*rgb.shape[:2]).labels_to_image(labels)
        shares = pixel_shares(labels, self.description.num_classes)
        names = self.description.class_names
        classes = [ClassShare(int(i), names[i], float(shares[i]), self._groups[i])
                   for i in np.argsort(-shares, kind="stable") if shares[i] > 0]
        files = {}
        if self.save_dir:
            stem = self._stems[path]
            files = {"overlay": f"{stem}_overlay.png", "labels": f"{stem}_labels.png"}
            write_png(files["overlay"], overlay(rgb, labels, self._colours))
            write_png(files["labels"], self._label_values[labels])  # the dataset's own values (ADE20K: 1..150)
        return Segmentation(path, labels, classes, files)

    def _detect_one(self, path: str, rgb: np.ndarray, x: np.ndarray) -> Detections:
        dets = select(self.outputs(x[None]), self.score_threshold, self.max_detections)
        h, w = rgb.shape[:2]
        dets = to_image(dets, self.description.preprocess.geometry(h, w))
        names, ids = self.description.class_names, self.description.class_ids
        idx = dets["labels"].astype(int) - 1  # the graph numbers classes 1..K (0 is background)
        masks = dets.get("masks")
        objects = [DetectedObject(int(i), names[i], float(sc), self._groups[i], tuple(float(v) for v in b),
                                  masks[j].rle() if masks is not None else None, ids[i])
                   for j, (i, sc, b) in enumerate(zip(idx, dets["scores"], dets["boxes"]))]
        files = {}
        if self.save_dir:
            files["image"] = f"{self._stems[path]}_det.png"
            captions = [f"{o.name} {o.score:.2f}" for o in objects]
            write_png(files["image"], draw_detections(rgb, dets["boxes"], captions, self._colours[idx], masks))
        return Detections(path, w, h, objects, files)

    def _results(self, paths: list[str], loaded: list[Loaded],
                 k: int) -> list[Classification | Segmentation | Detections]:
        if self._detect:  # detection graphs take one image at a time
            return [self._detect_one(p, rgb, x) for p, (rgb, x) in zip(paths, loaded)]
        outs = self.outputs(np.stack([x for _, x in loaded]))
        if not self._segment:
            return self._classify(paths, outs[self.description.output_names[0]], k)
        maps = label_maps(outs, self.description.output_names[0])
        return [self._segment_one(p, rgb, m) for p, (rgb, _), m in zip(paths, loaded, maps)]

    def predict(self, paths: Iterable[str],
                k: int = 5) -> Iterator[Classification | Segmentation | Detections | Failure]:
        """Yield one result (Classification, Segmentation or Detections) or Failure per path, in input order."""
        paths = list(paths)
        self._stems = output_stems(paths, self.save_dir) if self.save_dir else {}
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
                done = iter(self._results([p for p, _ in good], [x for _, x in good], k) if good else ())
                for p, x in order:
                    yield Failure(p, str(x)) if isinstance(x, ImageError) else next(done)
