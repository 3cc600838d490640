"""The end of every task's stage 1: score on val, save the checkpoint with its record, say where it went."""
from __future__ import annotations

from typing import Callable

from ltdeploy.metadata import ModelDescription
from training.config import Stage1Config, as_record
from training.core.checkpoint import save_checkpoint
from training.core.distributed import current_world
from training.core.two_stage import TwoStageModel


def finish_stage1(cfg: Stage1Config, model: TwoStageModel, desc: ModelDescription, history: dict,
                  validate: Callable[[TwoStageModel, ModelDescription, str], dict | None]) -> str | None:
    """Validate, save the stage-1 checkpoint (history: the training log) and return its sha256 (rank 0 under
    torchrun; the other ranks return None)."""
    if not current_world().main:
        return None
    history["val"] = validate(model, desc, "stage 1")
    sha = save_checkpoint(cfg.out, model, desc, {"stage1": history, "args": as_record(cfg)})
    print(f"wrote {cfg.out} (sha256 {sha[:12]})")
    return sha
