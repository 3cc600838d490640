"""The folded forms' arithmetic, written once in numpy: `export/` (through training/core's torch heads) and
`ltdeploy calibrate` (through onnx.helper) both fold with these rows.

DisAlign gives zhat = z + sig(x) * ((alpha - 1) * z + beta), with a1 = alpha - 1:
- affine:  rows [W; v], bias [b; c]: z and the confidence logit t; zhat = z + sigmoid(t) * (a1 * z + beta);
- weights: rows [W; diag(a1) W; v], bias [b; a1 * b + beta; c]; zhat = z + sigmoid(t) * z2 (a cosine head adds
           beta after its division by |x|, so it leaves beta out of the bias and returns it as a post-bias);
- plain:   W and b scaled per class and shifted (LWS, logit adjustment, tau-norm, a re-trained classifier);
- ncm:     rows 2 mu, bias -|mu|^2 - 1 on the centred, normalised feature.
"""
from __future__ import annotations

import numpy as np


def affine_rows(w: np.ndarray, b: np.ndarray, v: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """([W; v], [b; c]): the classifier's K rows and the confidence row (v (d,) or (1, d), c (1,))."""
    return np.concatenate([w, v.reshape(1, -1)]), np.concatenate([b, c.reshape(1)])


def weights_rows(w: np.ndarray, b: np.ndarray, a1: np.ndarray, beta: np.ndarray, v: np.ndarray, c: np.ndarray,
                 cosine: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """([W; diag(a1) W; v], its bias, the post-bias a cosine head adds after dividing by |x| (else None))."""
    rows = np.concatenate([w, a1[:, None] * w, v.reshape(1, -1)])
    if cosine:
        return rows, np.concatenate([b, a1 * b, c.reshape(1)]), np.concatenate([np.zeros_like(beta), beta])
    return rows, np.concatenate([b, a1 * b + beta, c.reshape(1)]), None


def plain_rows(w: np.ndarray, b: np.ndarray, scale: np.ndarray | None = None,
               shift: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scale * W, scale * b + shift): a per-class scale of the logits, then a per-class shift."""
    scale = np.ones(len(w), w.dtype) if scale is None else scale
    shift = np.zeros(len(w), w.dtype) if shift is None else shift
    return scale[:, None] * w, scale * b + shift


def ncm_rows(means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(2 mu, -|mu|^2 - 1): -|x - mu|^2 for a unit-length x, as one Gemm."""
    return 2 * means, -(means ** 2).sum(1) - 1
