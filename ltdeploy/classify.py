"""Classification post-processing: calibrated logits → probabilities (or the graph's own) → top-k."""
from __future__ import annotations

import numpy as np

from ltdeploy.metadata import ModelDescription
from ltdeploy.postprocess import Loaded, PostOptions, RunFn
from ltdeploy.results import Classification, TopClass


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of float logits (N, K), computed stably in float64."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def topk(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (N, k) and probabilities (N, k) of the k most probable classes, best first."""
    k = min(k, probs.shape[1])
    idx = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(probs, idx, axis=1)


class Postprocess:
    """Classification outputs → one Classification per image (top-k classes with their frequency groups)."""

    keeps_image = False  # nothing is drawn on the input

    def __init__(self, description: ModelDescription, options: PostOptions) -> None:
        self.description = description
        self.groups = description.groups
        self.probabilities = bool(description.postprocess.get("probabilities"))

    def results(self, paths: list[str], loaded: list[Loaded], run: RunFn, k: int) -> list[Classification]:
        """Run the batch once and rank each image's classes."""
        out = run(np.stack([x for _, x in loaded]))[self.description.output_names[0]]
        names = self.description.class_names
        # a graph that ends in its own Softmax (a calibrated foreign classifier) gives probabilities already
        idx, probs = topk(out.astype(np.float64) if self.probabilities else softmax(out), k)
        return [Classification(p, [TopClass(int(i), names[i], float(q), self.groups[i])
                                   for i, q in zip(row_i, row_p)])
                for p, row_i, row_p in zip(paths, idx, probs)]
