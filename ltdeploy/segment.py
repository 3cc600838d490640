"""Segmentation post-processing: per-pixel outputs → label maps, and the share of each class."""
from __future__ import annotations

import numpy as np

from ltdeploy.drawing import palette
from ltdeploy.metadata import ModelDescription
from ltdeploy.postprocess import Loaded, PostOptions, RunFn
from ltdeploy.results import ClassShare, Segmentation


def label_maps(outputs: dict[str, np.ndarray], output_name: str) -> np.ndarray:
    """Label maps (N, H, W) from a graph's `labels` output, or the argmax of its logits (N, K, H, W)."""
    out = outputs["labels"] if "labels" in outputs else outputs[output_name].argmax(1)
    return out.astype(np.uint8 if out.max(initial=0) < 256 else np.uint16)


def pixel_shares(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Fraction of the image's pixels predicted as each class (K,)."""
    return np.bincount(labels.ravel(), minlength=num_classes)[:num_classes] / max(labels.size, 1)


class Postprocess:
    """Segmentation outputs → one Segmentation per image: the label map at the image's size and class shares."""

    keeps_image = True  # the overlay is drawn on it

    def __init__(self, description: ModelDescription, options: PostOptions) -> None:
        self.description = description
        self.groups = description.groups
        self.colours = palette(description.num_classes)
        ids = description.class_ids
        self.label_values = np.asarray(ids, np.uint8 if max(ids) < 256 else np.uint16)

    def results(self, paths: list[str], loaded: list[Loaded], run: RunFn, k: int) -> list[Segmentation]:
        """Run the batch once; map each label map back to its image."""
        maps = label_maps(run(np.stack([x for _, x in loaded])), self.description.output_names[0])
        return [self._one(p, rgb, m) for p, (rgb, _), m in zip(paths, loaded, maps)]

    def _one(self, path: str, rgb: np.ndarray, labels: np.ndarray) -> Segmentation:
        desc = self.description
        labels = desc.preprocess.geometry(*rgb.shape[:2]).labels_to_image(labels)
        shares = pixel_shares(labels, desc.num_classes)
        classes = [ClassShare(int(i), desc.class_names[i], float(shares[i]), self.groups[i])
                   for i in np.argsort(-shares, kind="stable") if shares[i] > 0]
        return Segmentation(path, labels, classes, image=rgb, colours=self.colours, label_values=self.label_values)
