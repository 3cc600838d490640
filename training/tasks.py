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
# make_data.py's set names → the task whose `synthetic` mapping makes them
SYNTHETIC_SETS = {"digits-lt": "classification", "shapes-lt": "classification", "seg-lt": "segmentation",
                  "det-lt": "detection"}


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
