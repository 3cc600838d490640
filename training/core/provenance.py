"""Where a model came from: tools, versions, data and time, recorded in its description."""
from __future__ import annotations

import datetime
import os

import torch

import ltdeploy
from training.config import TrainConfig


def provenance(cfg: TrainConfig, stage: str, **extra) -> dict:
    """The provenance record of a model trained with `cfg` at `stage`."""
    return {"stage": stage, "dataset": os.path.abspath(cfg.data) if cfg.data else None, "seed": cfg.seed,
            "ltdeploy": ltdeploy.__version__, "torch": str(torch.__version__),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **extra}
