"""The segmentation side of training/train.py: stage 1 (per-pixel CE) and stage 2 (per-pixel DisAlign)."""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import torch

from ltdeploy.metadata import ModelDescription, share_thresholds
from ltdeploy.preprocess import PreprocessConfig
from training.core.checkpoint import file_sha256, read_checkpoint, save_checkpoint
from training.core.methods import SEG_METHODS, build_calibrator
from training.segmentation.data import make_seg_loader, pixel_counts, read_seg_split
from training.segmentation.engine import SegStage2Data, fit_seg_calibrator, train_seg_stage1
from training.segmentation.evaluate import SEG_HEADER, format_seg_scores, seg_confusion
from training.segmentation.metrics import segmentation_scores
from training.segmentation.model import LTSegmenter

# The eval transform per model: (input size, interpolation, mean, std); images resize straight to the size.
SEG_PREPROCESS = {
    "small_seg": (64, "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "lraspp_lite0": (512, "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "torchvision": (512, "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def seg_preprocess_for(args: argparse.Namespace) -> PreprocessConfig:
    """The model's default eval transform, with any command-line overrides."""
    size, interp, mean, std = SEG_PREPROCESS.get(args.backbone, SEG_PREPROCESS["torchvision"])
    size = args.input_size or size
    return PreprocessConfig(input_size=(size, size), resize_short=0, interpolation=args.interpolation or interp,
                            mean=tuple(args.mean or mean), std=tuple(args.std or std))


def report_seg(model: LTSegmenter, args: argparse.Namespace, desc: ModelDescription, name: str) -> dict:
    """Print and return mIoU / mAcc on the validation split."""
    def run(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).argmax(1).numpy()
    model.eval()
    scores = segmentation_scores(seg_confusion(run, read_seg_split(args.data, "val"), desc, name="val"),
                                 desc.groups)
    print(f"val: {SEG_HEADER}\nval: {format_seg_scores(name, scores)}")
    return {k: v for k, v in scores.items() if k != "per_class_iou"}


def run_seg_stage1(args: argparse.Namespace, provenance) -> int:
    """Train body + classifier jointly on per-pixel cross-entropy and save a stage-1 checkpoint."""
    torch.manual_seed(args.seed)
    train = read_seg_split(args.data, "train")
    counts = pixel_counts(train)
    cfg = seg_preprocess_for(args)
    model = LTSegmenter(args.backbone, len(counts), pretrained=args.pretrained)
    thresholds = share_thresholds(counts)
    print(f"stage 1: {args.backbone}, {len(counts)} classes, {len(train.images)} train images, input "
          f"{cfg.input_size}; pixel shares {max(counts) / sum(counts):.1%}..{min(counts) / sum(counts):.4%}")
    loader = make_seg_loader(train, cfg, args.batch_size, shuffle=True, workers=args.workers, seed=args.seed,
                             desc="train")
    history = train_seg_stage1(model, loader, args)
    desc = ModelDescription(task="segmentation", class_names=train.class_names, class_counts=counts,
                            class_ids=train.class_ids, group_thresholds=thresholds, preprocess=cfg, input_name="images",
                            output_names=["logits"], calibration={"method": "none"},
                            provenance=provenance(args, "stage1", model=args.backbone, pretrained=args.pretrained,
                                                  epochs=args.epochs))
    history["val"] = report_seg(model, args, desc, "stage 1")
    sha = save_checkpoint(args.out, model, desc, {"stage1": history, "args": vars(args)})
    print(f"wrote {args.out} (sha256 {sha[:12]})")
    return 0


def run_seg_stage2(args: argparse.Namespace, provenance) -> int:
    """Freeze a stage-1 segmenter and fit per-pixel calibration with pixel-count G-RW."""
    torch.manual_seed(args.seed)
    ck = read_checkpoint(args.checkpoint)
    model, desc = ck.model, ck.description
    if args.method not in SEG_METHODS:
        print(f"error: segmentation calibrates with {', '.join(SEG_METHODS)}, not {args.method}", file=sys.stderr)
        return 2
    if ck.arch.get("calibrator"):
        print(f"error: {args.checkpoint} is already calibrated; give the stage-1 checkpoint", file=sys.stderr)
        return 2
    train = read_seg_split(args.data, "train")
    counts = pixel_counts(train)
    model.freeze_stage1()
    loader = make_seg_loader(train, desc.preprocess, args.batch_size, shuffle=False, workers=args.workers)
    data = SegStage2Data(model, loader, counts, args)
    model.calibrator = build_calibrator(args.method, model.feat_dim, desc.num_classes, "segmentation")
    args.epochs = max(args.epochs, -(-args.min_steps // data.steps_per_epoch))
    print(f"stage 2: {args.method} per pixel, {args.epochs} epochs x {data.steps_per_epoch} steps, lr {args.lr}, "
          f"{'cached' if data.cached else 'recomputed'} features")
    start = time.perf_counter()
    model.train()
    info = fit_seg_calibrator(model.calibrator, model, data, args)
    model.eval()
    seconds = round(time.perf_counter() - start, 2)
    stage1_sha = file_sha256(args.checkpoint)
    calibration = {"method": args.method, "per_pixel": True, "stage1_sha256": stage1_sha, "epochs": args.epochs,
                   "steps": args.epochs * data.steps_per_epoch, "lr": args.lr, "rho": args.rho,
                   "sampling": "instance"}
    new_desc = dataclasses.replace(desc, class_counts=counts, calibration=calibration,
                                   provenance=provenance(args, "stage2", stage1=desc.provenance))
    history = {"stage2": {**info, "seconds_total": seconds}, "args": vars(args)}
    history["val"] = report_seg(model, args, new_desc, args.method)
    sha = save_checkpoint(args.out, model, new_desc, history)
    print(f"wrote {args.out} (sha256 {sha[:12]}); stage 2 took {seconds} s")
    return 0
