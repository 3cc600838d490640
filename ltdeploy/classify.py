"""Classification post-processing: calibrated logits → probabilities → top-k."""
from __future__ import annotations

import numpy as np


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
