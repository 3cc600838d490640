"""Reading any task's checkpoint: the task registry picks the builders, the core rebuilds the model."""
from __future__ import annotations

from training.core.checkpoint import Checkpoint, payload_task, read_payload, restore
from training.core.two_stage import TwoStageModel
from training.tasks import get_task


def read_checkpoint(path: str) -> Checkpoint:
    """Load a checkpoint written by `save_checkpoint` and rebuild its model in eval mode."""
    payload = read_payload(path)
    return restore(payload, path, get_task(payload_task(payload)))


def load_checkpoint(path: str) -> TwoStageModel:
    """The model of a checkpoint, in eval mode: float batch (N, 3, H, W) → calibrated logits (N, K[, H, W])."""
    return read_checkpoint(path).model
