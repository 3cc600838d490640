"""Generalized re-weighting weights (DisAlign eqs. 8-11), in numpy: the one definition training and
`ltdeploy calibrate` share."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def grw_weights(counts: Sequence[int], rho: float) -> np.ndarray:
    """w_c = K * (1/r_c)^rho / sum_k (1/r_k)^rho with r_c = n_c / sum n: mean weight 1 (float32).

    rho = 0 is instance-balanced (all ones), rho = 1 class-balanced. Classes with no images get the
    weight of a class with one image (they never occur in the loss anyway).
    """
    n = np.maximum(np.asarray(counts, np.float64), 1)
    w = (n / n.sum()) ** -rho
    return (w * len(w) / w.sum()).astype(np.float32)


def log_prior(counts: Sequence[int]) -> np.ndarray:
    """log(n_c / sum n) in float64, classes with no images counted as one (logit adjustment's shift)."""
    n = np.maximum(np.asarray(counts, np.float64), 1)
    return np.log(n / n.sum())
