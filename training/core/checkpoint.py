"""Checkpoints hold everything needed to rebuild the model: architecture, weights (on the CPU, whatever device
trained them), classes, per-class train counts, preprocessing and calibration (as the model description the
runtime reads). Rebuilding takes the checkpoint's task, which the caller supplies (`training.checkpoints`
looks it up), so this engine never imports the tasks built on it."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ltdeploy.files import atomic_path, file_sha256
from ltdeploy.metadata import ModelDescription
from training.core.device import cpu_state
from training.core.methods import build_calibrator
from training.core.resume import FORMAT as RESUME_FORMAT
from training.core.two_stage import TwoStageModel

if TYPE_CHECKING:
    from training.core.task import Task

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
    payload = {"format": FORMAT, "arch": arch, "state_dict": cpu_state(model),
               "description": description.to_dict(), "history": history}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return file_sha256(path)


def read_payload(path: str) -> dict:
    """The raw payload of a checkpoint `save_checkpoint` wrote; one-line errors for anything else."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable torch checkpoint ({type(exc).__name__})") from None
    if isinstance(payload, dict) and payload.get("format") == RESUME_FORMAT:
        raise ValueError(f"{path}: a training run that has not finished; continue it with --resume {path}")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not an ltdeploy checkpoint (expected format {FORMAT!r})")
    return payload


def payload_task(payload: dict) -> str:
    """The task a checkpoint payload belongs to (the first checkpoints carried none: classification)."""
    return payload["arch"].get("task", "classification")


def restore(payload: dict, path: str, task: "Task") -> Checkpoint:
    """Rebuild a payload's model in eval mode with its task's builders."""
    task.upgrade(payload)
    arch = payload["arch"]
    model = task.build_model(arch)
    if arch.get("calibrator"):
        model.calibrator = build_calibrator(arch["calibrator"], model.feat_dim, arch["num_classes"], task.methods)
    model.load_state_dict(payload["state_dict"], strict=True)
    model.eval()
    desc = ModelDescription.from_dict(payload["description"], source=path)
    return Checkpoint(model, desc, arch, payload.get("history", {}), path)
