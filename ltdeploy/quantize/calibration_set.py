"""The calibration images for one model: from a dataset folder of the model's task (a split, drawn balanced or
by instance) or from a plain folder of images, and the record of that choice the INT8 model carries."""
from __future__ import annotations

import hashlib
import os

import numpy as np

from ltdeploy.errors import DatasetError, ImageError
from ltdeploy.image_io import expand_sources
from ltdeploy.metadata import ModelDescription
from ltdeploy.quantize import SAMPLINGS
from ltdeploy.quantize.sampling import balanced_choice, instance_choice


def _list_sha(paths: list[str], root: str) -> str:
    text = "\n".join(os.path.relpath(p, root) for p in paths)
    return hashlib.sha256(text.encode()).hexdigest()


def _dataset_images(folder: str, desc: ModelDescription, split: str) -> tuple[list[str], list[set[int]]] | None:
    """(images, classes shown in each) when `folder` is a dataset of the model's task; None for a plain folder."""
    from ltdeploy.tasks import TASKS, evaluation_module

    module = evaluation_module(desc.task)
    if module.is_dataset(folder):
        return module.image_classes(folder, split, desc.num_classes)
    for other in TASKS:
        if other != desc.task and evaluation_module(other).is_dataset(folder):
            raise DatasetError(f"{folder}: a {other} dataset, but the model is a {desc.task} model; calibrate on "
                               f"its own kind of data or on a plain folder of images")
    return None


def calibration_set(folder: str, desc: ModelDescription, split: str, n: int, sampling: str,
                    seed: int = 0) -> tuple[list[str], dict]:
    """(image paths, record) for calibrating `desc`'s model on `folder`."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"calibration sampling {sampling!r}: choose from {', '.join(SAMPLINGS)}")
    if not os.path.isdir(folder):
        raise DatasetError(f"{folder}: no such calibration folder")
    rng = np.random.default_rng(seed)
    found = _dataset_images(folder, desc, split)
    if found is None:
        try:
            paths = expand_sources([folder])
        except ImageError as exc:
            raise DatasetError(str(exc)) from None
        chosen = [paths[i] for i in instance_choice(len(paths), n, rng)]
        record = {"source": "folder", "sampling": "instance", "pool": len(paths)}
    else:
        paths, shown = found
        idx = balanced_choice(shown, desc.class_counts, n, rng) if sampling == "balanced" else \
            instance_choice(len(paths), n, rng)
        chosen = [paths[i] for i in idx]
        covered = set().union(*(shown[i] for i in idx)) if idx else set()
        record = {"source": f"dataset split {split}", "sampling": sampling, "pool": len(paths),
                  "classes_covered": len(covered)}
    if not chosen:
        raise DatasetError(f"{folder}: no calibration images found")
    record.update(images=len(chosen), seed=seed, list_sha256=_list_sha(chosen, folder))
    return chosen, record
