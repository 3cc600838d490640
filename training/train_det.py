"""The detection side of training/train.py: stage 1 (Faster / Mask R-CNN, optional PCB, RFS) and stage 2
(DisAlign on the foreground logits with instance-count G-RW), both evaluated LVIS-style on val."""
from __future__ import annotations

import argparse
import json
import sys

import torch
import torch.distributed as dist

from ltdeploy.metadata import ModelDescription
from ltdeploy.preprocess import PreprocessConfig
from training.checkpoint import file_sha256, read_checkpoint, save_checkpoint
from training.det_data import LVISDataset
from training.det_engine import init_distributed, train_detector
from training.det_evaluate import print_det_table, score_detector
from training.grw_loss import grw_weights
from training.modeling.detector import LTDetector
from training.stage2_methods import DET_METHODS, build_calibrator

LVIS_THRESHOLDS = (100, 11)  # frequent: > 100 training images; rare: < 11 (1-10)


def det_preprocess(size: int) -> PreprocessConfig:
    """What the exported graph takes: RGB in 0..1 at `size` (the graph normalises and resizes itself)."""
    return PreprocessConfig(input_size=(size, size), resize_short=0, interpolation="bilinear",
                            mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def evaluate_detector(model: LTDetector, data: str, split: str = "val", name: str = "model") -> dict:
    """Box (and mask) LVIS AP and PwB of a PyTorch detector on a split; prints the table."""
    scores = score_detector(model, data, split)
    print_det_table([(name, scores)])
    return scores


def _describe(train: LVISDataset, calibration: dict, prov: dict, masks: bool, size: int) -> ModelDescription:
    outputs = ["boxes", "labels", "scores"] + (["masks"] if masks else [])
    return ModelDescription(task="detection", class_names=train.class_names, class_counts=train.image_counts(),
                            group_thresholds=LVIS_THRESHOLDS, preprocess=det_preprocess(size), input_name="images",
                            output_names=outputs, calibration=calibration, provenance=prov)


def _finish(world: int) -> None:
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def run_det_stage1(args: argparse.Namespace, provenance) -> int:
    """Train a detector (optionally with PCB) and save a stage-1 checkpoint (rank 0 under torchrun)."""
    rank, world = init_distributed()
    torch.manual_seed(args.seed)
    train = LVISDataset(args.data, "train", masks=args.masks)
    size = args.input_size or 128
    model = LTDetector(body=args.backbone, num_classes=len(train.categories), masks=args.masks, head=args.head,
                       passes=args.passes, pcb=args.pcb, image_size=size, pretrained=args.pretrained)
    if rank == 0:
        groups = [c.get("frequency", "?") for c in train.categories]
        print(f"stage 1: {args.backbone} {'Mask' if args.masks else 'Faster'} R-CNN, {len(train.categories)} "
              f"categories (r {groups.count('r')} / c {groups.count('c')} / f {groups.count('f')}), "
              f"{len(train)} images, {args.passes} pass(es), PCB {'on from epoch ' + str(args.pcb_start + 1) if args.pcb else 'off'}, "
              f"RFS t={args.rfs}, {world} process(es)")
    history = train_detector(model, train, args)
    if rank == 0:
        history["val"] = evaluate_detector(model, args.data, name="stage 1")
        prov = provenance(args, "stage1", model=args.backbone, pretrained=args.pretrained, pcb=args.pcb, passes=args.passes, rfs=args.rfs,
                          epochs=args.epochs, world_size=world)
        desc = _describe(train, {"method": "none"}, prov, args.masks, size)
        sha = save_checkpoint(args.out, model, desc, {"stage1": history, "args": vars(args)})
        print(f"wrote {args.out} (sha256 {sha[:12]}); stage 1 took {history['seconds']} s")
        if args.loss_log:
            with open(args.loss_log, "w") as f:
                json.dump({"world_size": world, "iterations": history["iterations"]}, f)
    _finish(world)
    return 0


def run_det_stage2(args: argparse.Namespace, provenance) -> int:
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
    train = LVISDataset(args.data, "train", masks=ck.arch.get("masks", False))
    counts = train.instance_counts()
    model.calibrator = build_calibrator(args.method, model.feat_dim, len(counts), "detection")
    model.freeze_stage1()
    weight = torch.cat([torch.ones(1), grw_weights(counts, args.rho)])  # background weight fixed at 1
    model.net.roi_heads.class_weight = weight
    print(f"stage 2: {args.method} on {len(counts)} foreground logits, G-RW rho {args.rho} on instance counts "
          f"(weights {float(weight[1:].min()):.3f}..{float(weight[1:].max()):.3f}), {args.epochs} epochs, lr {args.lr}")
    history = train_detector(model, train, args, stage="stage 2", loss_keys=("loss_classifier",))
    model.net.roi_heads.class_weight = None
    history["val"] = evaluate_detector(model, args.data, name="DisAlign")
    calibration = {"method": args.method, "rho": args.rho, "counts": "instances", "background": "untouched"}
    new_desc = ModelDescription(task=desc.task, class_names=desc.class_names, class_counts=desc.class_counts,
                                group_thresholds=desc.group_thresholds, preprocess=desc.preprocess,
                                input_name=desc.input_name, output_names=desc.output_names, calibration=calibration,
                                provenance=provenance(args, "stage2", stage1=desc.provenance,
                                                      stage1_sha256=file_sha256(args.checkpoint)))
    sha = save_checkpoint(args.out, model, new_desc, {"stage2": history, "stage1": ck.history, "args": vars(args)})
    print(f"wrote {args.out} (sha256 {sha[:12]}); stage 2 took {history['seconds']} s")
    return 0
