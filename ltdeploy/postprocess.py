"""What every task's post-processing receives: the options of a prediction run and the engine to call.

Each task module (`classify`, `segment`, `detect`) holds a `Postprocess` with `keeps_image` (whether the
result draws on the decoded input) and `results(paths, loaded, run, k)`, found through `ltdeploy.tasks`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

Loaded = tuple[np.ndarray | None, np.ndarray]  # (the RGB image where the task draws on it, model input)
RunFn = Callable[[np.ndarray], dict[str, np.ndarray]]  # preprocessed batch → all graph outputs


@dataclass(frozen=True)
class PostOptions:
    """Per-run choices of post-processing (detection reads them; the other tasks have none)."""

    score_threshold: float = 0.25
    max_detections: int = 100
