"""Classification's two stages: stage 1 trains backbone and head jointly (instance-balanced cross-entropy);
stage 2 brings the frozen features of the training split to the shared stage-2 run (training/core/stage2.py)."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ltdeploy.datasets.classification_sets import read_split
from ltdeploy.evaluation.accuracy import ACCURACY_HEADER, format_accuracy, long_tail_accuracy
from ltdeploy.metadata import ModelDescription, default_group_thresholds
from ltdeploy.preprocess import PreprocessConfig
from training.classification.backbones import preprocess_defaults
from training.classification.data import AugmentView, ListDataset, in_memory, make_loader, preload
from training.classification.features import Stage2Data
from training.classification.model import LTClassifier
from training.config import Stage1Config, Stage2Config
from training.core.bad_images import streaming_loader
from training.core.checkpoint import Checkpoint
from training.core.device import module_device
from training.core.loops import predict_logits, train_stage1
from training.core.methods import METHODS, TRAINED, build_calibrator
from training.core.provenance import provenance
from training.core.stage1 import finish_stage1
from training.core.stage2 import Stage2Job, stage1_sha
from training.core.transforms import build_transforms
from training.core.weights import load_into, read_state_dict, weights_record


def preprocess_for(cfg: Stage1Config) -> PreprocessConfig:
    """The backbone's default eval transform (a library model's own config), with any command-line overrides."""
    size, short, interp, mean, std = preprocess_defaults(cfg.backbone)
    size = cfg.input_size or size
    short = short if cfg.resize_short is None else cfg.resize_short
    return PreprocessConfig(input_size=(size, size), resize_short=short, interpolation=cfg.interpolation or interp,
                            mean=tuple(cfg.mean or mean), std=tuple(cfg.std or std))


def validate(model: LTClassifier, data: str, desc: ModelDescription, name: str) -> dict:
    """Print and return long-tail accuracy on the validation split."""
    val = read_split(data, "val", num_classes=desc.num_classes)
    loader = make_loader(val, desc.preprocess, 256, shuffle=False, desc="val")
    return _val_report(predict_logits(model, loader).argmax(1).numpy(), val.labels, desc, name)


def validate_cached(model: LTClassifier, data: Stage2Data, desc: ModelDescription, name: str) -> dict:
    """`validate` of a model whose stage 1 is frozen, on the cached val features: stage 2 changes only what
    follows the features, so every method scored on the same stage 1 skips the backbone."""
    feats, labels = data.val_features()
    with torch.no_grad():
        pred = model.forward_head(feats.to(module_device(model))).argmax(1).cpu().numpy()
    return _val_report(pred, labels.numpy(), desc, name)


def _val_report(pred: np.ndarray, labels: np.ndarray, desc: ModelDescription, name: str) -> dict:
    acc = long_tail_accuracy(pred, labels, desc.class_counts, tuple(desc.group_thresholds))
    print(f"val: {ACCURACY_HEADER}\nval: {format_accuracy(name, acc)}")
    return {k: v for k, v in acc.items() if k != "per_class"}


def stage1(cfg: Stage1Config) -> int:
    """Train backbone + head jointly and save a stage-1 checkpoint."""
    torch.manual_seed(cfg.seed)
    train = read_split(cfg.data, "train")
    read_split(cfg.data, "val", num_classes=train.num_classes)  # a broken val split fails now, not after training
    counts = train.class_counts()
    pre = preprocess_for(cfg)
    thresholds = (cfg.many, cfg.few) if cfg.many is not None else default_group_thresholds(counts)
    model = LTClassifier(cfg.backbone, cfg.head, train.num_classes, pretrained=cfg.pretrained)
    if cfg.weights:
        skipped = load_into(model.backbone, read_state_dict(cfg.weights), cfg.weights)
        print(f"loaded {cfg.weights} into the backbone ({skipped} tensors it lacks skipped, e.g. a classifier)")
    if cfg.freeze_backbone:  # a linear probe: the backbone (BatchNorm statistics included) stays as loaded
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    print(f"stage 1: {cfg.backbone}{' (frozen)' if cfg.freeze_backbone else ''} + {cfg.head} head, "
          f"{train.num_classes} classes, {len(train.paths)} train images ({max(counts)}..{min(counts)} per class), "
          f"input {pre.input_size}")
    transforms = build_transforms(cfg.transforms)
    if transforms is None:
        loader = make_loader(train, pre, cfg.batch_size, shuffle=True, workers=cfg.workers, seed=cfg.seed,
                             skip_bad=True, desc="train")
    else:  # the recipe's augmentation replaces the built-in shift and flip
        view = AugmentView(pre, transforms)
        images = preload(train, pre, "train", skip_bad=True, view=view) if in_memory(train, pre) else \
            ListDataset(train, pre, skip_bad=True, view=view)
        loader = streaming_loader(images, cfg.batch_size, cfg.workers, cfg.seed)
        cfg = dataclasses.replace(cfg, shift=0, hflip=False)
    history = train_stage1(model, loader, cfg)
    model.eval()
    desc = ModelDescription(task="classification", class_names=train.class_names, class_counts=counts,
                            group_thresholds=thresholds, preprocess=pre, input_name="images",
                            output_names=["logits"], calibration={"method": "none"},
                            provenance=provenance(cfg, "stage1", backbone=cfg.backbone, head=cfg.head,
                                                  pretrained=cfg.pretrained, frozen_backbone=cfg.freeze_backbone,
                                                  epochs=cfg.epochs,
                                                  weights=weights_record(cfg.weights) if cfg.weights else None))
    finish_stage1(cfg, model, desc, history, lambda m, d, name: validate(m, cfg.data, d, name))
    return 0


def stage2_job(ck: Checkpoint, cfg: Stage2Config) -> Stage2Job:
    """The frozen model's training features (cached), and a fresh calibrator of the chosen method."""
    model, desc = ck.model, ck.description
    train = read_split(cfg.data, "train", num_classes=desc.num_classes)
    model.freeze_stage1()
    sha = stage1_sha(cfg)
    data = Stage2Data(model, train, desc.preprocess, cfg, stage1_sha256=sha)
    calibrator = build_calibrator(cfg.method, model.feat_dim, desc.num_classes)
    model.calibrator = calibrator
    trained = cfg.method in TRAINED

    def banner(c: Stage2Config) -> str:
        source = "augmented images" if c.augment else ("cached features" if data.cached else "recomputed features")
        return f"stage 2: {c.method}, {c.epochs} epochs x {data.steps_per_epoch} steps, lr {c.lr}, {source}" \
            if trained else ""

    def calibration(c: Stage2Config, info: dict) -> dict:
        record = {"method": c.method, "stage1_sha256": sha}
        if trained:
            record.update(epochs=c.epochs, steps=c.epochs * data.steps_per_epoch, lr=c.lr, augment=c.augment)
        record.update({k: info[k] for k in ("rho", "tau", "sampling") if k in info})
        return record

    return Stage2Job(steps_per_epoch=data.steps_per_epoch if trained else None, banner=banner,
                     fit=lambda c: METHODS[c.method].fit(calibrator, model, data, c),
                     validate=lambda m, d, name: validate_cached(m, data, d, name),
                     calibration=calibration, class_counts=data.counts)
