"""Detection post-processing: graph outputs at the model's input size → boxes on the image, and each box's
mask pasted at the image's pixels."""
from __future__ import annotations

import numpy as np

from ltdeploy.drawing import palette
from ltdeploy.masks import paste_masks
from ltdeploy.metadata import ModelDescription
from ltdeploy.postprocess import Loaded, PostOptions, RunFn
from ltdeploy.preprocess import Geometry
from ltdeploy.results import DetectedObject, Detections


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


class Postprocess:
    """Detection outputs → one Detections per image: boxes (and masks) at the image's pixels, best first."""

    keeps_image = True  # boxes are drawn on it

    def __init__(self, description: ModelDescription, options: PostOptions) -> None:
        self.description, self.options = description, options
        self.groups = description.groups
        self.colours = palette(description.num_classes)

    def results(self, paths: list[str], loaded: list[Loaded], run: RunFn, k: int) -> list[Detections]:
        """One engine call per image: detection graphs take each image at its own fitted size."""
        return [self._one(p, rgb, run(x[None])) for p, (rgb, x) in zip(paths, loaded)]

    def _one(self, path: str, rgb: np.ndarray, outputs: dict[str, np.ndarray]) -> Detections:
        dets = select(outputs, self.options.score_threshold, self.options.max_detections)
        h, w = rgb.shape[:2]
        dets = to_image(dets, self.description.preprocess.geometry(h, w))
        names, ids = self.description.class_names, self.description.class_ids
        idx = dets["labels"].astype(int) - 1  # the graph numbers classes 1..K (0 is background)
        masks = dets.get("masks")
        objects = [DetectedObject(int(i), names[i], float(sc), self.groups[i], tuple(float(v) for v in b),
                                  masks[j].rle() if masks is not None else None, ids[i])
                   for j, (i, sc, b) in enumerate(zip(idx, dets["scores"], dets["boxes"]))]
        return Detections(path, w, h, objects, image=rgb, colours=self.colours, masks=masks)
