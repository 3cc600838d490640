"""Classification as a registered task (training/tasks.py)."""
from __future__ import annotations

import argparse

from ltdeploy.calibrate.auto import CLASSIFICATION_SELECT
from ltdeploy.datasets.classification_sets import read_split
from training.classification import train
from training.classification.backbones import BACKBONES, SPEC_PREFIXES
from training.classification.evaluate import report
from training.classification.imagefolder import write_imagefolder_layout
from training.classification.imported import import_model
from training.classification.model import LTClassifier
from training.classification.synthetic import make_digits_lt, make_shapes_lt
from training.config import TaskDefaults
from training.core.methods import CLASSIFICATION_BUILDERS, classification_candidates
from training.core.task import SyntheticSet, Task, dataset_folder


def _build(arch: dict) -> LTClassifier:
    return LTClassifier(arch["backbone"], arch["head"], arch["num_classes"])


def _export_images(data: str | None, split: str, provenance: dict) -> list[str]:
    return read_split(dataset_folder(data, provenance), split).paths


def _describe(summary: dict, args: argparse.Namespace) -> str:
    counts = list(summary["train_counts"].values())
    return (f"{args.name}: {summary['classes']} classes, train {sum(counts)} images ({counts[0]} .. {counts[-1]} "
            f"per class), val {summary['val_per_class']}/class, test {summary['test_per_class']}/class -> {args.out}")


SYNTHETIC = {
    "digits-lt": SyntheticSet(lambda out, a: make_digits_lt(out, imbalance=a.imbalance or 50.0, seed=a.seed),
                              _describe, {"imagefolder": write_imagefolder_layout}),
    "shapes-lt": SyntheticSet(lambda out, a: make_shapes_lt(out, imbalance=a.imbalance or 100.0, seed=a.seed,
                                                            num_classes=a.classes or 50, n_max=a.n_max,
                                                            n_val=a.val_images or 10, size=a.size or 32), _describe,
                              {"imagefolder": write_imagefolder_layout}),
}

TASK = Task(name="classification", defaults=TaskDefaults(64, 0.1, 5e-4, 30, 10, rho=1.2), models=tuple(BACKBONES),
            methods=CLASSIFICATION_BUILDERS, build_model=_build, stage1=train.stage1,
            stage2_job=train.stage2_job, report=report, export_images=_export_images, eval_split="test",
            synthetic=SYNTHETIC, auto_candidates=classification_candidates,
            auto_select=CLASSIFICATION_SELECT,
            spec_prefixes=SPEC_PREFIXES, import_model=import_model)
