"""The runtime's task registry: what differs between classification, segmentation and detection at run time.

Everything else in the runtime is task-agnostic: the predictor asks the task's post-processing (found here)
for result objects, and the CLI, the builder and the benchmarks read the facts below instead of testing
task names.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from ltdeploy.errors import MetadataError


@dataclass(frozen=True)
class TaskSpec:
    """One task's run-time facts."""

    name: str
    group_names: tuple[str, str, str]  # frequency groups, most frequent first
    count_unit: str  # what class_counts count
    first_class_id: int  # default id of class 0 (detection graphs number foreground classes from 1)
    one_image_per_call: bool  # the graph takes one image at its own fitted size (no batching)
    batch_range: tuple[int, int, int]  # the default TensorRT profile (min, opt, max batch)
    postprocess: str  # module holding the task's `Postprocess`
    evaluation: str  # module scoring an engine on a labelled split (`ltdeploy val`, calibration sets)


TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in (
    TaskSpec("classification", ("many", "medium", "few"), "training images", 0, False, (1, 8, 32),
             "ltdeploy.classify", "ltdeploy.evaluation.classification"),
    TaskSpec("segmentation", ("head", "body", "tail"), "training pixels", 0, False, (1, 8, 32),
             "ltdeploy.segment", "ltdeploy.evaluation.segmentation"),
    TaskSpec("detection", ("frequent", "common", "rare"), "training images", 1, True, (1, 1, 1),
             "ltdeploy.detect", "ltdeploy.evaluation.detection"),
)}


def task_spec(name: str) -> TaskSpec:
    """The registered task of that name (MetadataError for an unknown one)."""
    if name not in TASKS:
        raise MetadataError(f"task is {name!r}; this ltdeploy knows {', '.join(TASKS)}")
    return TASKS[name]


def postprocess_class(name: str) -> type:
    """The task's post-processing class (imported on first use: classification never loads the mask code)."""
    return importlib.import_module(task_spec(name).postprocess).Postprocess


def evaluation_module(name: str):
    """The task's evaluation module (evaluate, image_classes, is_dataset, COLUMNS, DEFAULT_SPLIT)."""
    return importlib.import_module(task_spec(name).evaluation)
