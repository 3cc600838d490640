"""Two-stage long-tail training.

    python training/train.py stage1 --data data/digits-lt --out runs/digits/stage1.pt
    python training/train.py stage2 --method disalign --checkpoint runs/digits/stage1.pt \
        --data data/digits-lt --out runs/digits/disalign.pt

Stage 1 trains backbone and head jointly (instance-balanced, cross-entropy). Stage 2 freezes all of
stage 1 (BatchNorm statistics included) and fits only a calibration method's parameters, on cached
features unless --augment asks for augmented images through the frozen backbone every epoch.
Methods: disalign (default), its ablations disalign-magnitude / disalign-margin, grw-classifier, crt,
lws, tau-norm, ncm, logit-adjust.

Segmentation data (ADE20K as unzipped, or seg-lt: images/, annotations/, classes.txt) trains a segmenter instead
(training/segmentation/train.py): `--backbone small_seg` (default) or a torchvision / LR-ASPP model, and stage 2
calibrates every pixel (disalign and its two ablations):

    python training/train.py stage1 --data data/seg-lt --out runs/seg/stage1.pt --hflip
    python training/train.py stage2 --checkpoint runs/seg/stage1.pt --data data/seg-lt --out runs/seg/disalign.pt

Detection data (LVIS v1, COCO 2017 or det-lt as laid out on disk, or --train-ann/--val-ann/--images; see
docs/datasets.md) trains Faster R-CNN
(or Mask R-CNN with --masks) with our RoI box branch (training/detection/train.py); --pcb adds PCB's iterative head
and soft targets, --rfs T repeat-factor sampling; stage 2 fits DisAlign on the foreground logits. Runs in
one process or under `torchrun --nproc_per_node 2` (gloo):

    python training/train.py stage1 --data data/det-lt --out runs/det/pcb.pt --pcb --epochs 12
    python training/train.py stage2 --checkpoint runs/det/pcb.pt --data data/det-lt --out runs/det/pcb_disalign.pt
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import sys
import time

import torch

import ltdeploy
from ltdeploy.errors import LtDeployError
from ltdeploy.metadata import ModelDescription, default_group_thresholds
from ltdeploy.preprocess import PreprocessConfig
from training.classification.backbones import BACKBONES
from training.classification.data import make_loader
from training.classification.features import Stage2Data
from training.classification.lists import read_split
from training.classification.metrics import ACCURACY_HEADER, format_accuracy, long_tail_accuracy
from training.classification.model import LTClassifier
from training.core.checkpoint import file_sha256, read_checkpoint, save_checkpoint
from training.core.heads import HEADS
from training.core.loops import predict_logits, train_stage1
from training.core.methods import METHODS, TRAINED, build_calibrator
from training.detection.candidates import add_candidate_args
from training.detection.model import DET_BODIES
from training.detection.sources import is_det_dataset
from training.segmentation.bodies import SEG_BODIES
from training.segmentation.data import is_seg_dataset

# The eval transform each backbone family expects: (input size, resize short side, interpolation, mean, std).
PREPROCESS_DEFAULTS = {
    "small_cnn": (32, 0, "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "tf_efficientnet_lite0": (224, 256, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "resnet": (224, 256, "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


# Defaults that differ by task: (batch size, lr, weight decay, stage-1 epochs, stage-2 epochs).
TASK_DEFAULTS = {"detection": (8, 0.01, 1e-4, 12, 4)}
OTHER_DEFAULTS = (64, 0.1, 5e-4, 30, 10)
# docs/method.md §3: the paper's values for ImageNet-LT, ADE20K and LVIS
DEFAULT_RHO = {"classification": 1.2, "segmentation": 0.3, "detection": 0.8}


def preprocess_for(args: argparse.Namespace) -> PreprocessConfig:
    """The backbone's default eval transform, with any command-line overrides."""
    key = "resnet" if args.backbone.startswith("resnet") else args.backbone
    size, short, interp, mean, std = PREPROCESS_DEFAULTS[key]
    size = args.input_size or size
    short = short if args.resize_short is None else args.resize_short
    return PreprocessConfig(input_size=(size, size), resize_short=short, interpolation=args.interpolation or interp,
                            mean=tuple(args.mean or mean), std=tuple(args.std or std))


def provenance(args: argparse.Namespace, stage: str, **extra) -> dict:
    """Where a model came from: tools, versions, data, time."""
    return {"stage": stage, "dataset": os.path.abspath(args.data) if args.data else None, "seed": args.seed,
            "ltdeploy": ltdeploy.__version__, "torch": str(torch.__version__),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **extra}


def report(model: LTClassifier, args: argparse.Namespace, cfg: PreprocessConfig, counts: list[int],
           thresholds: tuple[int, int], name: str) -> dict:
    """Print and return long-tail accuracy on the validation split."""
    val = read_split(args.data, "val", num_classes=len(counts))
    loader = make_loader(val, cfg, 256, shuffle=False, desc="val")
    pred = predict_logits(model, loader).argmax(1).numpy()
    acc = long_tail_accuracy(pred, val.labels, counts, thresholds)
    print(f"val: {ACCURACY_HEADER}\nval: {format_accuracy(name, acc)}")
    return {k: v for k, v in acc.items() if k != "per_class"}


def run_stage1(args: argparse.Namespace) -> int:
    """Train backbone + head jointly and save a stage-1 checkpoint."""
    torch.manual_seed(args.seed)
    train = read_split(args.data, "train")
    counts = train.class_counts()
    cfg = preprocess_for(args)
    thresholds = (args.many, args.few) if args.many is not None else default_group_thresholds(counts)
    model = LTClassifier(args.backbone, args.head, train.num_classes, pretrained=args.pretrained)
    print(f"stage 1: {args.backbone} + {args.head} head, {train.num_classes} classes, {len(train.paths)} train "
          f"images ({max(counts)}..{min(counts)} per class), input {cfg.input_size}")
    loader = make_loader(train, cfg, args.batch_size, shuffle=True, workers=args.workers, seed=args.seed,
                         desc="train")
    history = train_stage1(model, loader, args)
    model.eval()
    history["val"] = report(model, args, cfg, counts, thresholds, "stage 1")
    desc = ModelDescription(task="classification", class_names=train.class_names, class_counts=counts,
                            group_thresholds=thresholds, preprocess=cfg, input_name="images",
                            output_names=["logits"], calibration={"method": "none"},
                            provenance=provenance(args, "stage1", backbone=args.backbone, head=args.head,
                                                  pretrained=args.pretrained, epochs=args.epochs))
    sha = save_checkpoint(args.out, model, desc, {"stage1": history, "args": vars(args)})
    print(f"wrote {args.out} (sha256 {sha[:12]})")
    return 0


def run_stage2(args: argparse.Namespace) -> int:
    """Freeze a stage-1 checkpoint and fit a calibration method on top of it."""
    torch.manual_seed(args.seed)
    ck = read_checkpoint(args.checkpoint)
    model, desc = ck.model, ck.description
    if ck.arch.get("calibrator"):
        print(f"error: {args.checkpoint} is already calibrated ({ck.arch['calibrator']}); give the stage-1 "
              "checkpoint", file=sys.stderr)
        return 2
    train = read_split(args.data, "train", num_classes=desc.num_classes)
    model.freeze_stage1()
    stage1_sha = file_sha256(args.checkpoint)
    data = Stage2Data(model, train, desc.preprocess, args, stage1_sha256=stage1_sha)
    calibrator = build_calibrator(args.method, model.feat_dim, desc.num_classes)
    model.calibrator = calibrator
    if args.method in TRAINED:
        # Small sets give few steps per epoch: run at least --min-steps iterations (recorded in the checkpoint).
        args.epochs = max(args.epochs, -(-args.min_steps // data.steps_per_epoch))
        source = "augmented images" if args.augment else ("cached features" if data.cached else "recomputed features")
        print(f"stage 2: {args.method}, {args.epochs} epochs x {data.steps_per_epoch} steps, lr {args.lr}, {source}")
    start = time.perf_counter()
    model.train()
    info = METHODS[args.method].fit(calibrator, model, data, args)
    model.eval()
    seconds = round(time.perf_counter() - start, 2)
    history = {"stage2": {**info, "seconds_total": seconds}, "args": vars(args)}
    history["val"] = report(model, args, desc.preprocess, data.counts, tuple(desc.group_thresholds), args.method)
    calibration = {"method": args.method, "stage1_sha256": stage1_sha}
    if args.method in TRAINED:
        calibration.update(epochs=args.epochs, steps=args.epochs * data.steps_per_epoch, lr=args.lr,
                           augment=args.augment)
    calibration.update({k: info[k] for k in ("rho", "tau", "sampling") if k in info})
    new_desc = dataclasses.replace(desc, class_counts=data.counts, calibration=calibration,
                                   provenance=provenance(args, "stage2", stage1=desc.provenance))
    sha = save_checkpoint(args.out, model, new_desc, history)
    print(f"wrote {args.out} (sha256 {sha[:12]}); stage 2 took {seconds} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Arguments of both stages."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="stage", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", default=None,
                        help="dataset folder: ImageNet-LT lists, ADE20K (ADEChallengeData2016) or seg-lt, LVIS v1, "
                             "COCO, det-lt (the layout is found from the folder)")
    common.add_argument("--train-ann", default=None, help="detection: the train JSON (LVIS / COCO), instead of --data")
    common.add_argument("--val-ann", default=None, help="detection: the val JSON")
    common.add_argument("--images", default=None, help="detection: the folder holding train2017/ and val2017/")
    common.add_argument("--out", required=True, help="checkpoint to write")
    common.add_argument("--batch-size", type=int, default=None, help="default 64 (detection 8)")
    common.add_argument("--lr", type=float, default=None, help="default 0.1 (detection 0.01)")
    common.add_argument("--wd", type=float, default=None, help="default 5e-4 (detection 1e-4)")
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--workers", type=int, default=2, help="decoding processes for large sets")
    common.add_argument("--shift", type=int, default=2, help="augmentation: random shift in pixels")
    common.add_argument("--hflip", action="store_true", help="augmentation: random horizontal flips")

    s1 = sub.add_parser("stage1", parents=[common], help="joint training on the long-tailed data")
    s1.add_argument("--backbone", default=None, choices=list(BACKBONES) + list(SEG_BODIES) + list(DET_BODIES),
                    help="default: small_cnn (classification), small_seg (segmentation), lite0_fpn (detection)")
    s1.add_argument("--head", default="linear", choices=list(HEADS))
    s1.add_argument("--pretrained", action="store_true",
                    help="ImageNet weights (tf_efficientnet_lite0, lraspp_lite0, lite0_fpn)")
    s1.add_argument("--epochs", type=int, default=None, help="default 30 (detection 12)")
    s1.add_argument("--input-size", type=int, default=None)
    s1.add_argument("--resize-short", type=int, default=None, help="0: resize straight to the input size")
    s1.add_argument("--interpolation", default=None, choices=["nearest", "bilinear", "bicubic", "area"])
    s1.add_argument("--mean", type=float, nargs=3, default=None)
    s1.add_argument("--std", type=float, nargs=3, default=None)
    s1.add_argument("--many", type=int, default=None, help="many-shot: more than this many train images")
    s1.add_argument("--few", type=int, default=None, help="few-shot: fewer than this many train images")
    det = s1.add_argument_group("detection")
    det.add_argument("--min-size", type=int, default=None,
                     help="short side (default per body: lite0_fpn 128, mobilenet_v3_fpn 320, resnet50_fpn 800)")
    det.add_argument("--max-size", type=int, default=None,
                     help="long side at most (default per body: 128, 640, 1333); --input-size S sets both to S")
    det.add_argument("--masks", action="store_true", help="Mask R-CNN (instance segmentation)")
    det.add_argument("--pcb", action="store_true", help="PCB: iterative head (3 passes) and confusion soft targets")
    det.add_argument("--passes", type=int, default=None, help="box-head passes (default 3 with --pcb, else 1)")
    det.add_argument("--pcb-start", type=int, default=None, help="first PCB epoch, 0-based (default 2/3 of --epochs)")
    det.add_argument("--detections-per-image", type=int, default=300,
                     help="detections kept after NMS (300: LVIS's evaluation; the mask head runs on each)")
    add_candidate_args(det)
    det.add_argument("--loss-log", default=None, help="write the per-iteration loss curve (JSON) here")

    s2 = sub.add_parser("stage2", parents=[common], help="calibrate a frozen stage-1 model")
    s2.add_argument("--method", default="disalign", choices=list(METHODS))
    s2.add_argument("--checkpoint", required=True, help="stage-1 checkpoint")
    s2.add_argument("--rho", type=float, default=None,
                    help="G-RW scale: 0 instance-, 1 class-balanced (default 1.2; segmentation 0.3, as ADE20K)")
    s2.add_argument("--epochs", type=int, default=None, help="default 10 (detection 4)")
    s2.add_argument("--min-steps", type=int, default=1000, help="raise epochs until this many iterations")
    s2.add_argument("--augment", action="store_true", help="recompute features from augmented images")
    s2.add_argument("--no-cache", action="store_true",
                    help="recompute features every epoch, no on-disk cache either (for timing)")
    s2.add_argument("--tau", type=float, default=1.0, help="logit-adjust: strength of the prior correction")
    for sp in (s1, s2):
        sp.add_argument("--rfs", type=float, default=0.0, help="detection: repeat-factor sampling threshold (0: off)")
        sp.add_argument("--warmup", type=int, default=100, help="detection: linear warm-up iterations")
        sp.add_argument("--clip", type=float, default=10.0, help="detection: gradient norm clip")
        sp.add_argument("--no-val", action="store_true",
                        help="detection: skip the val evaluation at the end (LVIS val takes hours on a CPU; "
                             "run evaluate.py on the checkpoint instead)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.data and not (args.train_ann or args.val_ann):
        parser.error("give --data DIR (or, for detection, --train-ann / --val-ann with --images)")
    # the cores this process may use (taskset, cgroups); macOS and Windows have no affinity call
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(cores)
    task = ("detection" if args.train_ann or args.val_ann or is_det_dataset(args.data) else
            "segmentation" if is_seg_dataset(args.data) else "classification")
    if args.stage == "stage1":
        if (args.many is None) != (args.few is None):
            print("error: give both --many and --few, or neither", file=sys.stderr)
            return 2
        models = {"segmentation": SEG_BODIES, "detection": DET_BODIES}.get(task, BACKBONES)
        args.backbone = args.backbone or next(iter(models))
        if args.backbone not in models:
            print(f"error: {args.data} is {task} data; --backbone must be one of {', '.join(models)}",
                  file=sys.stderr)
            return 2
    batch, lr, wd, epochs1, epochs2 = TASK_DEFAULTS.get(task, OTHER_DEFAULTS)
    args.batch_size = args.batch_size or batch
    args.lr = lr if args.lr is None else args.lr
    args.wd = wd if args.wd is None else args.wd
    args.epochs = args.epochs or (epochs1 if args.stage == "stage1" else epochs2)
    if args.stage == "stage2" and args.rho is None:
        args.rho = DEFAULT_RHO[task]
    try:
        return _dispatch(args, task)
    except LtDeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace, task: str) -> int:
    if task == "detection":
        from training.detection.sources import resolve_det_source
        from training.detection.train import run_det_stage1, run_det_stage2
        source = resolve_det_source(args.data, args.train_ann, args.val_ann, args.images)
        if args.stage == "stage1":
            args.passes = args.passes or (3 if args.pcb else 1)
            args.pcb_start = (2 * args.epochs) // 3 if args.pcb_start is None else args.pcb_start
            return run_det_stage1(args, source, provenance)
        return run_det_stage2(args, source, provenance)
    if task == "segmentation":
        from training.segmentation.train import run_seg_stage1, run_seg_stage2
        return run_seg_stage1(args, provenance) if args.stage == "stage1" else run_seg_stage2(args, provenance)
    return run_stage1(args) if args.stage == "stage1" else run_stage2(args)


if __name__ == "__main__":
    sys.exit(main())
