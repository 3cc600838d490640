"""Checkpoints hold everything needed to rebuild the model: architecture, weights, classes, per-class
train counts, preprocessing and calibration (as the model description the runtime reads)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ltdeploy.files import atomic_path, file_sha256
from ltdeploy.metadata import ModelDescription
from training.core.methods import build_calibrator
from training.core.two_stage import TwoStageModel

FORMAT = "ltdeploy.checkpoint/1"


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode), its description and the raw training record."""

    model: TwoStageModel
    description: ModelDescription
    arch: dict
    history: dict
    path: str


def save_checkpoint(path: str, model: TwoStageModel, description: ModelDescription, history: dict) -> str:
    """Write atomically (temporary file, then rename); returns the file's sha256."""
    arch = dict(model.arch, calibrator=getattr(model.calibrator, "method_name", None))
    payload = {"format": FORMAT, "arch": arch, "state_dict": model.state_dict(),
               "description": description.to_dict(), "history": history}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return file_sha256(path)


def read_checkpoint(path: str) -> Checkpoint:
    """Load a checkpoint written by `save_checkpoint` and rebuild its model in eval mode."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable torch checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not an ltdeploy checkpoint (expected format {FORMAT!r})")
    from training.tasks import get_task  # the tasks build their models from this module's checkpoints

    arch = payload["arch"]
    task = get_task(arch.get("task", "classification"))  # the first checkpoints carried no task
    task.upgrade(payload)
    model = task.build_model(arch)
    if arch.get("calibrator"):
        model.calibrator = build_calibrator(arch["calibrator"], model.feat_dim, arch["num_classes"], task.methods)
    model.load_state_dict(payload["state_dict"], strict=True)
    model.eval()
    desc = ModelDescription.from_dict(payload["description"], source=path)
    return Checkpoint(model, desc, arch, payload.get("history", {}), path)


def load_checkpoint(path: str) -> TwoStageModel:
    """The model of a checkpoint, in eval mode: float batch (N, 3, H, W) → calibrated logits (N, K[, H, W])."""
    return read_checkpoint(path).model
