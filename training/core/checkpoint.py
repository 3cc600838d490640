"""Checkpoints hold everything needed to rebuild the model: architecture, weights, classes, per-class
train counts, preprocessing and calibration (as the model description the runtime reads)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ltdeploy.files import atomic_path, file_sha256
from ltdeploy.metadata import LEGACY_SCHEMA, SCHEMA, ModelDescription
from ltdeploy.preprocess import PreprocessConfig
from training.classification.model import LTClassifier
from training.core.methods import build_calibrator
from training.core.two_stage import TwoStageModel
from training.detection.model import LTDetector
from training.segmentation.model import LTSegmenter

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
    _upgrade_detector(payload)
    arch = payload["arch"]
    task = arch.get("task", "classification")
    if task == "segmentation":
        model = LTSegmenter(arch["body"], arch["num_classes"])
    elif task == "detection":
        model = LTDetector(**{k: v for k, v in arch.items() if k not in ("task", "calibrator")})
    else:
        model = LTClassifier(arch["backbone"], arch["head"], arch["num_classes"])
    if arch.get("calibrator"):
        model.calibrator = build_calibrator(arch["calibrator"], model.feat_dim, arch["num_classes"], task)
    model.load_state_dict(payload["state_dict"], strict=True)
    model.eval()
    desc = ModelDescription.from_dict(payload["description"], source=path)
    return Checkpoint(model, desc, arch, payload.get("history", {}), path)


def _upgrade_detector(payload: dict) -> None:
    """Detectors saved before the preprocessing resized for them: torchvision resized inside the model
    (long side to `image_size`, aspect kept), which is the 'fit' preprocessing at that size."""
    arch, desc = payload["arch"], payload["description"]
    if arch.get("task") != "detection" or "image_size" not in arch:
        return
    size = arch.pop("image_size")
    if desc.get("schema") == LEGACY_SCHEMA:
        payload["description"] = dict(desc, schema=SCHEMA, preprocess=PreprocessConfig.fit(size, size).to_dict(),
                                      class_ids=list(range(1, len(desc["class_names"]) + 1)))


def load_checkpoint(path: str) -> TwoStageModel:
    """The model of a checkpoint, in eval mode: float batch (N, 3, H, W) → calibrated logits (N, K[, H, W])."""
    return read_checkpoint(path).model
