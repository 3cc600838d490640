"""The detection side of training/train.py: stage 1 (Faster / Mask R-CNN, optional PCB, RFS) and stage 2
(DisAlign on the foreground logits with instance-count G-RW), both evaluated LVIS-style on val."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import torch
import torch.distributed as dist

from ltdeploy.metadata import ModelDescription
from ltdeploy.preprocess import PreprocessConfig
from training.core.checkpoint import file_sha256, read_checkpoint, save_checkpoint
from training.core.grw import grw_weights
from training.core.methods import DET_METHODS, build_calibrator
from training.detection.data import LVISDataset
from training.detection.engine import init_distributed, train_detector
from training.detection.evaluate import check_categories, print_det_table, score_detector
from training.detection.model import DET_SIZES, LTDetector
from training.detection.sources import DetSource

LVIS_THRESHOLDS = (100, 11)  # frequent: > 100 training images; rare: < 11 (1-10)


def det_preprocess(args: argparse.Namespace) -> PreprocessConfig:
    """The body's default resize (short side, long side at most; aspect kept) with any command-line sizes.
    The graph takes RGB in 0..1 and normalises itself."""
    short, long = DET_SIZES[args.backbone]
    if args.input_size:  # one number: fit inside a square of that side
        short = long = args.input_size
    short = args.min_size or short
    long = max(short, args.max_size or long)
    return PreprocessConfig.fit(short, long, interpolation=args.interpolation or "bilinear")


def val_split(args: argparse.Namespace, source: DetSource, cfg: PreprocessConfig) -> LVISDataset | None:
    """The val split, read before training so that a broken one fails at once (None with --no-val)."""
    return None if args.no_val else LVISDataset(source, "val", cfg)


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


def _finish(world: int) -> None:
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def run_det_stage1(args: argparse.Namespace, source: DetSource, provenance) -> int:
    """Train a detector (optionally with PCB) and save a stage-1 checkpoint (rank 0 under torchrun)."""
    rank, world = init_distributed()
    torch.manual_seed(args.seed)
    cfg = det_preprocess(args)
    train = LVISDataset(source, "train", cfg, masks=args.masks)
    val = val_split(args, source, cfg)
    model = LTDetector(body=args.backbone, num_classes=len(train.categories), masks=args.masks, head=args.head,
                       passes=args.passes, pcb=args.pcb, pretrained=args.pretrained,
                       detections_per_image=args.detections_per_image,
                       candidates_per_class=args.candidates_per_class, candidates=args.candidates)
    prov = provenance(args, "stage1", model=args.backbone, pretrained=args.pretrained, pcb=args.pcb,
                      passes=args.passes, rfs=args.rfs, epochs=args.epochs, world_size=world,
                      dataset_files=source.to_dict())
    desc = _describe(train, {"method": "none"}, prov, args.masks, cfg)
    if rank == 0:
        groups = desc.groups
        print(f"stage 1: {args.backbone} {'Mask' if args.masks else 'Faster'} R-CNN, {len(train.categories)} "
              f"categories (rare {groups.count('rare')} / common {groups.count('common')} / frequent "
              f"{groups.count('frequent')}), {len(train)} images ({source.layout} layout), short side "
              f"{cfg.resize_short} / long side <= {cfg.max_size}, {args.passes} pass(es), PCB "
              f"{'on from epoch ' + str(args.pcb_start + 1) if args.pcb else 'off'}, RFS t={args.rfs}, "
              f"{world} process(es)")
    history = train_detector(model, train, args)
    if rank == 0:
        history["val"] = evaluate_detector(model, desc, val, name="stage 1")
        sha = save_checkpoint(args.out, model, desc, {"stage1": history, "args": vars(args)})
        print(f"wrote {args.out} (sha256 {sha[:12]}); stage 1 took {history['seconds']} s")
        if args.loss_log:
            with open(args.loss_log, "w") as f:
                json.dump({"world_size": world, "iterations": history["iterations"]}, f)
    _finish(world)
    return 0


def run_det_stage2(args: argparse.Namespace, source: DetSource, provenance) -> int:
    """Freeze a stage-1 detector; fit DisAlign on its foreground logits with instance-count G-RW."""
    torch.manual_seed(args.seed)
    if args.method not in DET_METHODS:
        print(f"error: detection calibrates with {', '.join(DET_METHODS)}, not {args.method}", file=sys.stderr)
        return 2
    ck = read_checkpoint(args.checkpoint)
    model, desc = ck.model, ck.description
    if model.calibrator is not None:
        print(f"error: {args.checkpoint} is already calibrated; give a stage-1 checkpoint", file=sys.stderr)
        return 2
    train = LVISDataset(source, "train", desc.preprocess, masks=ck.arch.get("masks", False))
    check_categories(train, desc)
    val = val_split(args, source, desc.preprocess)
    counts = train.instance_counts()
    model.calibrator = build_calibrator(args.method, model.feat_dim, len(counts), "detection")
    model.freeze_stage1()
    weight = torch.cat([torch.ones(1), grw_weights(counts, args.rho)])  # background weight fixed at 1
    model.net.roi_heads.class_weight = weight
    print(f"stage 2: {args.method} on {len(counts)} foreground logits, G-RW rho {args.rho} on instance counts "
          f"(weights {float(weight[1:].min()):.3f}..{float(weight[1:].max()):.3f}), {args.epochs} epochs, lr {args.lr}")
    history = train_detector(model, train, args, stage="stage 2", loss_keys=("loss_classifier",))
    model.net.roi_heads.class_weight = None
    history["val"] = evaluate_detector(model, desc, val, name="DisAlign")
    calibration = {"method": args.method, "rho": args.rho, "counts": "instances", "background": "untouched"}
    new_desc = dataclasses.replace(desc, calibration=calibration, provenance=provenance(
        args, "stage2", stage1=desc.provenance, stage1_sha256=file_sha256(args.checkpoint),
        dataset_files=source.to_dict()))
    sha = save_checkpoint(args.out, model, new_desc, {"stage2": history, "stage1": ck.history, "args": vars(args)})
    print(f"wrote {args.out} (sha256 {sha[:12]}); stage 2 took {history['seconds']} s")
    return 0
