"""What `ltdeploy calibrate` can fit, with which settings, and what its command line asked for (kept apart from
the fits, so the command line loads without numpy)."""
from __future__ import annotations

from dataclasses import dataclass

METHODS = ("disalign", "disalign-magnitude", "disalign-margin", "logit-adjust", "tau-norm", "lws", "crt",
           "grw-classifier", "ncm")


@dataclass(frozen=True)
class FitSettings:
    """Stage 2's settings (the command line's, with train.py stage2's defaults; a batch of 0 takes the task's)."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.1
    wd: float = 5e-4
    rho: float | None = 1.2  # None: the task's (classification 1.2, segmentation 0.3)
    tau: float = 1.0
    min_steps: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class Request:
    """What the command line asked for."""

    model: str
    data: str
    out: str
    method: str
    select: str
    settings: FitSettings
    preprocess: dict
    classes: str | None
    batch: int
    pixels: int
