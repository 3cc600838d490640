"""Detection / instance segmentation as a registered task (training/tasks.py)."""
from __future__ import annotations

import argparse

from ltdeploy.datasets.det_sources import DetSource, resolve_det_source
from ltdeploy.metadata import LEGACY_SCHEMA, SCHEMA
from ltdeploy.preprocess import PreprocessConfig
from training.config import TaskDefaults
from training.core.methods import DET_METHODS, rho_candidates
from training.core.task import SyntheticSet, Task
from training.detection import train
from training.detection.data import LVISDataset
from training.detection.evaluate import report
from training.detection.imported import import_model
from training.detection.model import DET_BODIES, SPEC_PREFIXES, LTDetector
from training.detection.synthetic import make_det_lt
from training.layouts import write_coco_layout, write_lvis_layout


def _build(arch: dict) -> LTDetector:
    return LTDetector(**{k: v for k, v in arch.items() if k not in ("task", "calibrator")})


def _upgrade(payload: dict) -> None:
    """Detectors saved before the preprocessing resized for them: torchvision resized inside the model
    (long side to `image_size`, aspect kept), which is the 'fit' preprocessing at that size."""
    arch, desc = payload["arch"], payload["description"]
    if "pretrained" in arch:  # it doubled as the switch to frozen BatchNorm (pretrained Lite0-FPN)
        arch["frozen_bn"] = bool(arch.pop("pretrained")) and arch.get("body") == "lite0_fpn"
    if "image_size" not in arch:
        return
    size = arch.pop("image_size")
    if desc.get("schema") == LEGACY_SCHEMA:
        payload["description"] = dict(desc, schema=SCHEMA, preprocess=PreprocessConfig.fit(size, size).to_dict(),
                                      class_ids=list(range(1, len(desc["class_names"]) + 1)))


def _export_images(data: str | None, split: str, provenance: dict) -> list[str]:
    """The split of --data, else of the dataset the checkpoint was trained on."""
    if data:
        source = resolve_det_source(data)
    elif provenance.get("dataset_files"):
        source = DetSource.from_dict(provenance["dataset_files"])
    else:
        source = resolve_det_source(provenance.get("dataset"))
    return LVISDataset(source, split).image_paths()


def _make(out: str, a: argparse.Namespace) -> dict:
    return make_det_lt(out, num_classes=a.classes or 50, n_train=a.train_images or 600, n_val=a.val_images or 150,
                       size=a.size or 128, seed=a.seed)


def _describe(summary: dict, a: argparse.Namespace) -> str:
    g = summary["groups"]
    return (f"det-lt: {summary['classes']} categories (rare {g['r']}, common {g['c']}, frequent {g['f']}), "
            f"{summary['train_images']} train / {summary['val_images']} val images, {summary['train_instances']} / "
            f"{summary['val_instances']} instances, {a.layout} layout -> {a.out}")


# --method auto tries each rho at the run's own stage-2 lr and at lr 0.2 with a short warm-up: on a small set
# the few stage-2 steps at the detection lr leave the calibrator at identity (README, det-lt Mask R-CNN)
AUTO_SETTINGS = ({}, {"lr": 0.2, "warmup": 10})

# lr 0.01, batch 8, 12 epochs: the 1x schedule scaled to one machine; rho 0.8: the paper's LVIS value
TASK = Task(name="detection", defaults=TaskDefaults(8, 0.01, 1e-4, 12, 4, rho=0.8), models=DET_BODIES,
            methods=DET_METHODS, build_model=_build, stage1=train.stage1,
            stage2_job=train.stage2_job, report=report, export_images=_export_images, resolve=train.resolve,
            upgrade=_upgrade, synthetic={"det-lt": SyntheticSet(_make, _describe, {"lvis": write_lvis_layout,
                                                                                   "coco": write_coco_layout})},
            auto_candidates=rho_candidates((0.5, 0.8, 1.2), AUTO_SETTINGS),
            auto_select={"ap": "box.AP", "apr": "box.APr"}, spec_prefixes=SPEC_PREFIXES, import_model=import_model)
