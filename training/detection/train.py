"""Detection's two stages: stage 1 (Faster / Mask R-CNN, optional PCB, RFS) and stage 2
(DisAlign on the foreground logits with instance-count G-RW), both evaluated LVIS-style on val."""
from __future__ import annotations

import dataclasses

import torch

from ltdeploy.datasets.det_sources import DetSource, resolve_det_source
from ltdeploy.files import write_json
from ltdeploy.metadata import ModelDescription
from ltdeploy.preprocess import PreprocessConfig
from training.config import Stage1Config, Stage2Config, as_record
from training.core.checkpoint import Checkpoint, save_checkpoint
from training.core.distributed import finish, init_distributed
from training.core.grw import grw_weights
from training.core.methods import DET_METHODS, build_calibrator
from training.core.provenance import provenance
from training.core.stage2 import Stage2Job, stage1_sha
from training.detection.data import LVISDataset
from training.detection.engine import train_detector
from training.detection.evaluate import check_dataset, print_det_table, score_detector
from training.detection.model import DET_SIZES, LTDetector

LVIS_THRESHOLDS = (100, 11)  # frequent: > 100 training images; rare: < 11 (1-10)


def det_preprocess(cfg: Stage1Config) -> PreprocessConfig:
    """The body's default resize (short side, long side at most; aspect kept) with any command-line sizes.
    The graph takes RGB in 0..1 and normalises itself."""
    # timm bodies and imported torchvision detectors: torchvision's 800 / 1333
    short, long = DET_SIZES.get(cfg.backbone, DET_SIZES["resnet50_fpn"])
    if cfg.input_size:  # one number: fit inside a square of that side
        short = long = cfg.input_size
    short = cfg.min_size or short
    long = max(short, cfg.max_size or long)
    return PreprocessConfig.fit(short, long, interpolation=cfg.interpolation or "bilinear")


def val_split(cfg: Stage1Config | Stage2Config, source: DetSource, pre: PreprocessConfig) -> LVISDataset | None:
    """The val split, read before training so that a broken one fails at once (None with --no-val)."""
    return None if cfg.no_val else LVISDataset(source, "val", pre)


def evaluate_detector(model: LTDetector, desc: ModelDescription, val: LVISDataset | None,
                      name: str = "model") -> dict | None:
    """Box (and mask) LVIS AP and PwB of a PyTorch detector on the val split; prints the table."""
    if val is None:
        return None
    scores = score_detector(model, desc, val)
    print_det_table([(name, scores)])
    return scores


def _describe(train: LVISDataset, calibration: dict, prov: dict, masks: bool,
              preprocess: PreprocessConfig) -> ModelDescription:
    outputs = ["boxes", "labels", "scores"] + (["masks"] if masks else [])
    return ModelDescription(task="detection", class_names=train.class_names, class_counts=train.image_counts(),
                            group_thresholds=LVIS_THRESHOLDS, preprocess=preprocess, input_name="images",
                            output_names=outputs, calibration=calibration, provenance=prov, class_ids=train.class_ids)


def resolve(cfg: Stage1Config | Stage2Config) -> Stage1Config | Stage2Config:
    """Stage 1's PCB defaults: 3 box-head passes with --pcb, PCB from 2/3 of the epochs."""
    if not isinstance(cfg, Stage1Config):
        return cfg
    return dataclasses.replace(cfg, passes=cfg.passes or (3 if cfg.pcb else 1),
                               pcb_start=(2 * cfg.epochs) // 3 if cfg.pcb_start is None else cfg.pcb_start)


def stage1(cfg: Stage1Config) -> int:
    """Train a detector (optionally with PCB) and save a stage-1 checkpoint (rank 0 under torchrun)."""
    source = resolve_det_source(cfg.data, cfg.train_ann, cfg.val_ann, cfg.images)
    joined = init_distributed()
    rank, world = joined.rank, joined.size
    torch.manual_seed(cfg.seed)
    pre = det_preprocess(cfg)
    train = LVISDataset(source, "train", pre, masks=cfg.masks, skip_bad=True)
    val = val_split(cfg, source, pre)
    caps = {k: v for k, v in {"candidates_per_class": cfg.candidates_per_class, "candidates": cfg.candidates}.items()
            if v is not None}  # the detector's own caps where neither the command line nor a recipe sets one
    model = LTDetector(body=cfg.backbone, num_classes=len(train.categories), masks=cfg.masks, head=cfg.head,
                       passes=cfg.passes, pcb=cfg.pcb, pretrained=cfg.pretrained, frozen_bn=cfg.pretrained,
                       detections_per_image=cfg.detections_per_image,
                       **caps)
    prov = provenance(cfg, "stage1", model=cfg.backbone, pretrained=cfg.pretrained, pcb=cfg.pcb,
                      passes=cfg.passes, rfs=cfg.rfs, epochs=cfg.epochs, world_size=world,
                      dataset_files=source.to_dict())
    desc = _describe(train, {"method": "none"}, prov, cfg.masks, pre)
    if rank == 0:
        groups = desc.groups
        print(f"stage 1: {cfg.backbone} {'Mask' if cfg.masks else 'Faster'} R-CNN, {len(train.categories)} "
              f"categories (rare {groups.count('rare')} / common {groups.count('common')} / frequent "
              f"{groups.count('frequent')}), {len(train)} images ({source.layout} layout), short side "
              f"{pre.resize_short} / long side <= {pre.max_size}, {cfg.passes} pass(es), PCB "
              f"{'on from epoch ' + str(cfg.pcb_start + 1) if cfg.pcb else 'off'}, RFS t={cfg.rfs}, "
              f"{world} process(es)")
    history = train_detector(model, train, cfg)
    if rank == 0:
        history["val"] = evaluate_detector(model, desc, val, name="stage 1")
        sha = save_checkpoint(cfg.out, model, desc, {"stage1": history, "args": as_record(cfg)})
        print(f"wrote {cfg.out} (sha256 {sha[:12]}); stage 1 took {history['seconds']} s")
        if cfg.loss_log:
            write_json(cfg.loss_log, {"world_size": world, "iterations": history["iterations"]})
    finish(joined)
    return 0


def stage2_job(ck: Checkpoint, cfg: Stage2Config) -> Stage2Job:
    """DisAlign on the frozen detector's foreground logits, with instance-count G-RW in the RoI loss."""
    model, desc = ck.model, ck.description
    source = resolve_det_source(cfg.data, cfg.train_ann, cfg.val_ann, cfg.images)
    train = LVISDataset(source, "train", desc.preprocess, masks=ck.arch.get("masks", False), skip_bad=True)
    check_dataset(train, desc)
    val = val_split(cfg, source, desc.preprocess)
    counts = train.instance_counts()
    model.calibrator = build_calibrator(cfg.method, model.feat_dim, len(counts), DET_METHODS)
    model.freeze_stage1()
    weight = torch.cat([torch.ones(1), grw_weights(counts, cfg.rho)])  # background weight fixed at 1

    def fit(c: Stage2Config) -> dict:
        model.net.roi_heads.class_weight = weight
        try:
            return train_detector(model, train, c, stage="stage 2", loss_keys=("loss_classifier",))
        finally:
            model.net.roi_heads.class_weight = None

    return Stage2Job(
        steps_per_epoch=None,
        banner=lambda c: f"stage 2: {c.method} on {len(counts)} foreground logits, G-RW rho {c.rho} on instance "
                         f"counts (weights {float(weight[1:].min()):.3f}..{float(weight[1:].max()):.3f}), "
                         f"{c.epochs} epochs, lr {c.lr}",
        fit=fit, validate=lambda m, d, name: evaluate_detector(m, d, val, name="DisAlign"),
        calibration=lambda c, info: {"method": c.method, "rho": c.rho, "counts": "instances",
                                     "background": "untouched"},
        provenance={"stage1_sha256": stage1_sha(cfg), "dataset_files": source.to_dict()},
        history={"stage1": ck.history})
