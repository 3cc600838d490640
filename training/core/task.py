"""The interface each task fills (classification, segmentation, detection): its defaults, model builders,
calibration methods and the functions the shared engine calls. The registry of tasks is `training.tasks`;
the engine in `training.core` takes a `Task` and never looks one up."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

from training.config import Stage1Config, Stage2Config, TaskDefaults, TrainConfig

if TYPE_CHECKING:
    from torch import nn

    from training.core.checkpoint import Checkpoint
    from training.core.stage2 import Stage2Job


@dataclass(frozen=True)
class SyntheticSet:
    """A small long-tailed set `make_data.py` writes: make(folder, args) → summary; describe(summary, args)."""

    make: Callable[[str, argparse.Namespace], dict]
    describe: Callable[[dict, argparse.Namespace], str]
    layouts: Mapping[str, Callable[[str, str], None]] = field(default_factory=dict)  # download layouts


def _unchanged(cfg: TrainConfig) -> TrainConfig:
    return cfg


def _no_upgrade(payload: dict) -> None:
    return None


@dataclass(frozen=True)
class Task:
    """One task's training side: defaults, models, methods, and the functions entry points dispatch to."""

    name: str
    defaults: TaskDefaults
    models: tuple[str, ...]  # --backbone choices; the first is the default
    methods: Mapping[str, Callable[[int, int], "nn.Module"]]  # stage-2 calibrator builders
    build_model: Callable[[dict], "nn.Module"]  # checkpoint arch → model (no calibrator)
    stage1: Callable[[Stage1Config], int]
    stage2_job: Callable[["Checkpoint", Stage2Config], "Stage2Job"]
    report: Callable[[argparse.Namespace], int]  # evaluate.py: table, plots, JSON
    export_images: Callable[[str | None, str, dict], list[str]]  # (data, split, provenance) → parity images
    eval_split: str = "val"  # the split evaluation and the export check use by default
    dense: bool = False  # per-pixel outputs: any input size, an argmax ending, pixel agreement
    resolve: Callable[[TrainConfig], TrainConfig] = _unchanged  # defaults that depend on other settings
    upgrade: Callable[[dict], None] = _no_upgrade  # an older checkpoint payload, rewritten in place
    synthetic: Mapping[str, SyntheticSet] = field(default_factory=dict)
    # --method auto: the candidates (method, config overrides), cheapest graph first (None: no auto), and the
    # --select names → the val score each reads (the first is the default; dotted keys read nested scores)
    auto_candidates: Callable[[Stage2Config], list[tuple[str, dict]]] | None = None
    auto_select: Mapping[str, str] = field(default_factory=dict)
    spec_prefixes: tuple[str, ...] = ()  # --backbone library specs beside `models` (timm:NAME, tv:NAME)
    import_model: Callable[[Stage1Config], int] | None = None  # train.py import: a trained model as stage 1


def dataset_folder(data: str | None, provenance: dict) -> str:
    """--data, else the folder the checkpoint was trained on (DatasetError when neither is there)."""
    from ltdeploy.errors import DatasetError

    folder = data or provenance.get("dataset")
    if not folder or not os.path.isdir(folder):
        raise DatasetError(f"no dataset folder {folder!r}")
    return folder
