"""Semantic segmentation as a registered task (training/tasks.py)."""
from __future__ import annotations

import argparse

from ltdeploy.calibrate.auto import SEGMENTATION_RHO, SEGMENTATION_SELECT
from ltdeploy.datasets.seg_folders import read_seg_split
from training.config import TaskDefaults
from training.core.methods import SEG_METHODS, rho_candidates
from training.core.task import SyntheticSet, Task, dataset_folder
from training.layouts import write_ade20k_layout
from training.segmentation import train
from training.segmentation.bodies import SEG_BODIES, SPEC_PREFIXES
from training.segmentation.evaluate import report
from training.segmentation.imported import import_model
from training.segmentation.model import LTSegmenter
from training.segmentation.synthetic import make_seg_lt


def _build(arch: dict) -> LTSegmenter:
    return LTSegmenter(arch["body"], arch["num_classes"])


def _export_images(data: str | None, split: str, provenance: dict) -> list[str]:
    return read_seg_split(dataset_folder(data, provenance), split).images


def _make(out: str, a: argparse.Namespace) -> dict:
    return make_seg_lt(out, num_classes=a.classes or 30, imbalance=a.imbalance or 15.0, seed=a.seed,
                       n_train=a.train_images or 400, n_val=a.val_images or 100)


def _describe(summary: dict, a: argparse.Namespace) -> str:
    share = sorted(summary["train_pixel_share"].values(), reverse=True)
    return (f"seg-lt: {summary['classes']} classes, {summary['train_images']} train / {summary['val_images']} val "
            f"images; pixel share {100 * share[0]:.1f}% .. {100 * share[-1]:.4f}%, {a.layout} layout -> {a.out}")


# rho 0.3: the paper's ADE20K value (docs/method.md §3)
TASK = Task(name="segmentation", defaults=TaskDefaults(64, 0.1, 5e-4, 30, 10, rho=0.3), models=tuple(SEG_BODIES),
            methods=SEG_METHODS, build_model=_build, stage1=train.stage1,
            stage2_job=train.stage2_job, report=report, export_images=_export_images, dense=True,
            synthetic={"seg-lt": SyntheticSet(_make, _describe, {"ade20k": write_ade20k_layout})},
            auto_candidates=rho_candidates(SEGMENTATION_RHO), auto_select=SEGMENTATION_SELECT,
            spec_prefixes=SPEC_PREFIXES, import_model=import_model)
