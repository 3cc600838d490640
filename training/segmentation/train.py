"""Segmentation's two stages: stage 1 trains body and classifier on per-pixel cross-entropy; stage 2 brings
the frozen decoder features to the shared stage-2 run, for per-pixel DisAlign with pixel-count G-RW."""
from __future__ import annotations

import dataclasses

import torch

from ltdeploy.datasets.seg_folders import IGNORE, pixel_counts, read_seg_split
from ltdeploy.evaluation.seg_scores import segmentation_scores
from ltdeploy.metadata import ModelDescription, share_thresholds
from ltdeploy.preprocess import PreprocessConfig
from training.config import Stage1Config, Stage2Config
from training.core.bad_images import streaming_loader
from training.core.checkpoint import Checkpoint
from training.core.device import module_device
from training.core.methods import SEG_METHODS, build_calibrator
from training.core.provenance import provenance
from training.core.stage1 import finish_stage1
from training.core.stage2 import Stage2Job, stage1_sha
from training.core.transforms import build_transforms
from training.segmentation.bodies import seg_preprocess_defaults
from training.segmentation.data import AugmentSegView, make_seg_loader, seg_images
from training.segmentation.engine import SegStage2Data, fit_seg_calibrator, train_seg_stage1
from training.segmentation.evaluate import SEG_HEADER, format_seg_scores, seg_confusion
from training.segmentation.model import LTSegmenter


def seg_preprocess_for(cfg: Stage1Config) -> PreprocessConfig:
    """The model's default eval transform, with any command-line overrides."""
    size, interp, mean, std = seg_preprocess_defaults(cfg.backbone)
    size = cfg.input_size or size
    return PreprocessConfig(input_size=(size, size), resize_short=0, interpolation=cfg.interpolation or interp,
                            mean=tuple(cfg.mean or mean), std=tuple(cfg.std or std))


def validate(model: LTSegmenter, data: str, desc: ModelDescription, name: str) -> dict:
    """Print and return mIoU / mAcc on the validation split."""
    def run(x):
        with torch.no_grad():
            return model(torch.from_numpy(x).to(module_device(model))).argmax(1).cpu().numpy()
    model.eval()
    scores = segmentation_scores(seg_confusion(run, read_seg_split(data, "val"), desc, name="val"), desc.groups)
    print(f"val: {SEG_HEADER}\nval: {format_seg_scores(name, scores)}")
    return {k: v for k, v in scores.items() if k != "per_class_iou"}


def stage1(cfg: Stage1Config) -> int:
    """Train body + classifier jointly on per-pixel cross-entropy and save a stage-1 checkpoint."""
    torch.manual_seed(cfg.seed)
    train = read_seg_split(cfg.data, "train")
    counts = pixel_counts(train)
    pre = seg_preprocess_for(cfg)
    model = LTSegmenter(cfg.backbone, len(counts), pretrained=cfg.pretrained)
    thresholds = share_thresholds(counts)
    print(f"stage 1: {cfg.backbone}, {len(counts)} classes, {len(train.images)} train images, input "
          f"{pre.input_size}; pixel shares {max(counts) / sum(counts):.1%}..{min(counts) / sum(counts):.4%}")
    transforms = build_transforms(cfg.transforms, label_fill=IGNORE)
    if transforms is None:
        loader = make_seg_loader(train, pre, cfg.batch_size, shuffle=True, workers=cfg.workers, seed=cfg.seed,
                                 desc="train", skip_bad=True)
    else:  # the recipe's augmentation replaces the built-in flip
        images = seg_images(train, pre, "train", skip_bad=True, view=AugmentSegView(pre, transforms))
        loader = streaming_loader(images, cfg.batch_size, cfg.workers, cfg.seed)
        cfg = dataclasses.replace(cfg, hflip=False)
    history = train_seg_stage1(model, loader, cfg)
    desc = ModelDescription(task="segmentation", class_names=train.class_names, class_counts=counts,
                            class_ids=train.class_ids, group_thresholds=thresholds, preprocess=pre, input_name="images",
                            output_names=["logits"], calibration={"method": "none"},
                            provenance=provenance(cfg, "stage1", model=cfg.backbone, pretrained=cfg.pretrained,
                                                  epochs=cfg.epochs))
    finish_stage1(cfg, model, desc, history, lambda m, d, name: validate(m, cfg.data, d, name))
    return 0


def stage2_job(ck: Checkpoint, cfg: Stage2Config) -> Stage2Job:
    """The frozen body's training features (cached in memory when they fit) and a per-pixel calibrator."""
    model, desc = ck.model, ck.description
    train = read_seg_split(cfg.data, "train")
    counts = pixel_counts(train)
    model.freeze_stage1()
    loader = make_seg_loader(train, desc.preprocess, cfg.batch_size, shuffle=False, workers=cfg.workers)
    data = SegStage2Data(model, loader, counts, cfg)
    model.calibrator = build_calibrator(cfg.method, model.feat_dim, desc.num_classes, SEG_METHODS)
    sha = stage1_sha(cfg)

    def calibration(c: Stage2Config, info: dict) -> dict:
        return {"method": c.method, "per_pixel": True, "stage1_sha256": sha, "epochs": c.epochs,
                "steps": c.epochs * data.steps_per_epoch, "lr": c.lr, "rho": c.rho, "sampling": "instance"}

    return Stage2Job(
        steps_per_epoch=data.steps_per_epoch,
        banner=lambda c: f"stage 2: {c.method} per pixel, {c.epochs} epochs x {data.steps_per_epoch} steps, lr "
                         f"{c.lr}, {'cached' if data.cached else 'recomputed'} features",
        fit=lambda c: fit_seg_calibrator(model.calibrator, model, data, c),
        validate=lambda m, d, name: validate(m, cfg.data, d, name), calibration=calibration, class_counts=counts)
