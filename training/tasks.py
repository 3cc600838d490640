"""The training tasks, registered in one place: what differs between classification, segmentation and
detection from data to export. Entry points find the task (from the dataset or the checkpoint) and call it;
nothing else tests a task's name.

Each task package holds its `Task` in `task.py`, imported on first use: datasets are recognised and synthetic
sets named here, torch-free, so a process imports only the task it works on (detection's torchvision import
alone costs seconds at every start).
"""
from __future__ import annotations

import argparse
import importlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

from ltdeploy.datasets.det_sources import is_det_dataset
from ltdeploy.datasets.seg_folders import is_seg_dataset
from training.config import Stage1Config, Stage2Config, TaskDefaults, TrainConfig

if TYPE_CHECKING:
    from torch import nn

    from training.core.checkpoint import Checkpoint
    from training.core.stage2 import Stage2Job

# Registry order is the order datasets are recognised in; classification (list files) comes last.
TASK_MODULES = {"detection": "training.detection.task", "segmentation": "training.segmentation.task",
                "classification": "training.classification.task"}
# The torch-free layout checks (ltdeploy.datasets); any folder no other task claims is read as ImageNet-LT
# lists, whose reader says what is missing.
DATASET_CHECKS: dict[str, Callable[[str | None], bool]] = {
    "detection": is_det_dataset, "segmentation": is_seg_dataset, "classification": lambda data: True}
# make_data.py's set names → the task whose `synthetic` mapping makes them
SYNTHETIC_SETS = {"digits-lt": "classification", "shapes-lt": "classification", "seg-lt": "segmentation",
                  "det-lt": "detection"}


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
    linear_probe: bool = False  # stage 1 takes --freeze-backbone
    spec_prefixes: tuple[str, ...] = ()  # --backbone library specs beside `models` (timm:NAME, tv:NAME)
    import_model: Callable[[Stage1Config], int] | None = None  # train.py import: a trained model as stage 1


def dataset_folder(data: str | None, provenance: dict) -> str:
    """--data, else the folder the checkpoint was trained on (DatasetError when neither is there)."""
    from ltdeploy.errors import DatasetError

    folder = data or provenance.get("dataset")
    if not folder or not os.path.isdir(folder):
        raise DatasetError(f"no dataset folder {folder!r}")
    return folder


def get_task(name: str) -> Task:
    """The registered task of that name."""
    if name not in TASK_MODULES:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASK_MODULES)}")
    return importlib.import_module(TASK_MODULES[name]).TASK


def all_tasks() -> list[Task]:
    """Every registered task, in recognition order."""
    return [get_task(name) for name in TASK_MODULES]


def find_task(data: str | None, annotations: bool = False) -> Task:
    """The task whose dataset layout `data` is (explicit annotation files mean detection)."""
    if annotations:
        return get_task("detection")
    return get_task(next(name for name, check in DATASET_CHECKS.items() if check(data)))


def synthetic_set(name: str) -> SyntheticSet:
    """The synthetic set `make_data.py` writes under that name."""
    return get_task(SYNTHETIC_SETS[name]).synthetic[name]
