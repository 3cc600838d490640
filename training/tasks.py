"""The training tasks, registered in one place: what differs between classification, segmentation and
detection from data to export. Entry points find the task (from the dataset or the checkpoint) and call it;
nothing else tests a task's name.

Each task package holds its `Task` in `task.py`, imported on first use: datasets are recognised and synthetic
sets named here, torch-free, so a process imports only the task it works on (detection's torchvision import
alone costs seconds at every start).
"""
from __future__ import annotations

import importlib
from typing import Callable

from ltdeploy.datasets.det_sources import is_det_dataset
from ltdeploy.datasets.seg_folders import is_seg_dataset
from training.core.task import SyntheticSet, Task

__all__ = ["SyntheticSet", "Task", "find_task", "get_task", "synthetic_set"]

# Registry order is the order datasets are recognised in; classification (list files) comes last.
TASK_MODULES = {"detection": "training.detection.task", "segmentation": "training.segmentation.task",
                "classification": "training.classification.task"}
# The torch-free layout checks (ltdeploy.datasets); any folder no other task claims is read as ImageNet-LT
# lists, whose reader says what is missing.
DATASET_CHECKS: dict[str, Callable[[str | None], bool]] = {
    "detection": is_det_dataset, "segmentation": is_seg_dataset, "classification": lambda data: True}
# The settings only some tasks read; one given to a task that does not read it is refused, never ignored.
_DETECTION = {"train_ann", "val_ann", "images", "rfs", "warmup", "clip", "no_val", "min_size", "max_size", "masks",
              "pcb", "passes", "pcb_start", "detections_per_image", "candidates_per_class", "candidates", "loss_log"}
_ON_GPU = {"amp", "channels_last", "sync_bn"}
_ENGINE = _ON_GPU | {"save_every", "resume"}  # the shared stage-1 engine's
TASK_SETTINGS = {"detection": frozenset(_DETECTION | _ENGINE | {"head"}),
                 "segmentation": frozenset(_ENGINE),
                 "classification": frozenset(_ENGINE | {"shift", "head", "freeze_backbone", "resize_short",
                                                        "augment", "tau"})}
# what only stage 1 reads (stage 2 and import fit no network, in one process)
STAGE1_ONLY = frozenset(_ENGINE | {"transforms"})
# make_data.py's set names → the task whose `synthetic` mapping makes them
SYNTHETIC_SETS = {"digits-lt": "classification", "shapes-lt": "classification", "seg-lt": "segmentation",
                  "det-lt": "detection"}


def unused_settings(task: Task, given: dict, stage: str = "stage1") -> list[str]:
    """The given settings this task's stage does not read (as flags: --warmup)."""
    other = set().union(*TASK_SETTINGS.values()) - TASK_SETTINGS[task.name]
    if stage != "stage1":
        other |= STAGE1_ONLY
    return [f"--{k.replace('_', '-')}" for k in given if k in other and given[k] not in ((), False)]


def trains_on_gpu(task: Task) -> bool:
    """Whether the task's stage 1 runs on the shared engine's devices (--device cuda, --amp)."""
    return _ON_GPU <= TASK_SETTINGS[task.name]


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
