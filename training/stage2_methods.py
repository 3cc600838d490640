"""Stage-2 calibration methods: name → (calibrator module, trainer). New methods register here."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from training.engine import fit_on_features
from training.grw_loss import GRWLoss
from training.modeling.calibration import DisAlign


@dataclass(frozen=True)
class Stage2Method:
    """A calibration method: how to build its module and how to train it on frozen features."""

    build: Callable[[int, int], nn.Module]  # (feature dim d, classes K) → calibrator(feat, z) → logits
    fit: Callable[[nn.Module, nn.Module, dict, argparse.Namespace], dict]  # (calibrator, model, data, args) → log


def _fit_disalign(calibrator: nn.Module, model: nn.Module, data: dict, args: argparse.Namespace) -> dict:
    """Train alpha, beta and the confidence on frozen features with the G-RW loss."""
    loss = GRWLoss(data["counts"], args.rho)

    def forward(feat: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            z = model.head(feat)
        return calibrator(feat, z)

    log = fit_on_features(forward, list(calibrator.parameters()), loss, data, args)
    return {"rho": args.rho, "grw_weights": [round(float(w), 6) for w in loss.weight], **log}


METHODS: dict[str, Stage2Method] = {
    "disalign": Stage2Method(build=DisAlign, fit=_fit_disalign),
}


def build_calibrator(name: str, in_features: int, num_classes: int) -> nn.Module:
    """A fresh calibration module of a registered method, tagged with its name."""
    if name not in METHODS:
        raise ValueError(f"unknown stage-2 method {name!r}; choose from {', '.join(METHODS)}")
    module = METHODS[name].build(in_features, num_classes)
    module.method_name = name
    return module
