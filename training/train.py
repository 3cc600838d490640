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

A model trained elsewhere becomes stage 1 with `import` (its own classifier is the stage-1 head), then any
stage-2 method calibrates it:

    python training/train.py import --arch timm:resnet50 --weights my_model.pth --data data/products \
        --out runs/products/stage1.pt
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import torch

from ltdeploy.errors import LtDeployError
from training.config import ImportConfig, Stage1Config, config_from_args, given_settings
from training.core.auto import run_auto
from training.core.device import resolve_device
from training.core.distributed import current_world, finish, init_distributed, launched
from training.core.heads import HEADS
from training.core.methods import METHODS
from training.core.stage2 import run_stage2
from training.detection.candidate_cap import add_candidate_args
from training.recipes import load_recipe, recipe_lines
from training.tasks import find_task, trains_on_gpu, unused_settings


def _common_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", default=None,
                        help="dataset folder: ImageNet-LT lists, ADE20K (ADEChallengeData2016) or seg-lt, LVIS v1, "
                             "COCO, det-lt (the layout is found from the folder)")
    common.add_argument("--train-ann", default=None, help="detection: the train JSON (LVIS / COCO), instead of --data")
    common.add_argument("--val-ann", default=None, help="detection: the val JSON")
    common.add_argument("--images", default=None, help="detection: the folder holding train2017/ and val2017/")
    common.add_argument("--out", required=True, help="checkpoint to write")
    common.add_argument("--recipe", default=None,
                        help="a paper's settings as defaults (flags given here override them); NAME from "
                             "`--recipe list`, or a .toml file")
    common.add_argument("--batch-size", type=int, default=None, help="default 64 (detection 8)")
    common.add_argument("--lr", type=float, default=None, help="default 0.1 (detection 0.01)")
    common.add_argument("--wd", type=float, default=None, help="default 5e-4 (detection 1e-4)")
    common.add_argument("--seed", type=int, default=None, help="default 0")
    common.add_argument("--workers", type=int, default=None, help="decoding processes for large sets (default 2)")
    common.add_argument("--shift", type=int, default=None, help="augmentation: random shift in pixels")
    common.add_argument("--hflip", action="store_true", default=None, help="augmentation: random horizontal flips")
    common.add_argument("--rfs", type=float, default=None, help="detection: repeat-factor sampling threshold (0: off)")
    common.add_argument("--warmup", type=int, default=None, help="detection: linear warm-up iterations")
    common.add_argument("--clip", type=float, default=None, help="detection: gradient norm clip")
    common.add_argument("--device", default=None, help="auto (the first GPU if there is one), cpu or cuda[:N]")
    common.add_argument("--amp", default=None, choices=["off", "bf16", "fp16"],
                        help="mixed precision (torch.autocast; fp16 adds a GradScaler)")
    common.add_argument("--channels-last", action="store_true", default=None, help="channels-last memory format (faster convs "
                                                                      "on tensor cores)")
    common.add_argument("--sync-bn", action="store_true", default=None, help="under torchrun on GPUs: batch-norm statistics "
                                                                 "over every process's batch")
    common.add_argument("--save-every", type=int, default=None,
                        help="write a resumable state to --out every K epochs (Ctrl-C / SIGTERM write one too)")
    common.add_argument("--resume", default=None, help="continue the run whose resumable state this file holds")
    common.add_argument("--no-val", action="store_true", default=None,
                        help="detection: skip the val evaluation at the end (LVIS val takes hours on a CPU; "
                             "run evaluate.py on the checkpoint instead)")
    return common


def _stage1_args(s1: argparse.ArgumentParser) -> None:
    s1.add_argument("--backbone", default=None,
                    help="the task's models (checked once the data says which task): default small_cnn "
                         "(classification), small_seg (segmentation), lite0_fpn (detection)")
    s1.add_argument("--head", default=None, choices=list(HEADS))
    s1.add_argument("--pretrained", action="store_true", default=None,
                    help="ImageNet weights (tf_efficientnet_lite0, lraspp_lite0, lite0_fpn)")
    s1.add_argument("--freeze-backbone", action="store_true", default=None,
                    help="classification: train only the head on the frozen (pretrained) backbone, a linear probe")
    s1.add_argument("--weights", default=None,
                    help="local weights for the backbone (a state dict, or a checkpoint holding one under "
                         "state_dict / model); keys the backbone lacks, such as a classifier, are skipped")
    s1.add_argument("--epochs", type=int, default=None, help="default 30 (detection 12)")
    _model_args(s1)
    det = s1.add_argument_group("detection")
    det.add_argument("--min-size", type=int, default=None,
                     help="short side (default per body: lite0_fpn 128, mobilenet_v3_fpn 320, resnet50_fpn 800)")
    det.add_argument("--max-size", type=int, default=None,
                     help="long side at most (default per body: 128, 640, 1333); --input-size S sets both to S")
    det.add_argument("--masks", action="store_true", default=None, help="Mask R-CNN (instance segmentation)")
    det.add_argument("--pcb", action="store_true", default=None, help="PCB: iterative head (3 passes) and confusion soft targets")
    det.add_argument("--passes", type=int, default=None, help="box-head passes (default 3 with --pcb, else 1)")
    det.add_argument("--pcb-start", type=int, default=None, help="first PCB epoch, 0-based (default 2/3 of --epochs)")
    det.add_argument("--detections-per-image", type=int, default=None,
                     help="detections kept after NMS (300: LVIS's evaluation; the mask head runs on each)")
    add_candidate_args(det)
    det.add_argument("--loss-log", default=None, help="write the per-iteration loss curve (JSON) here")


def _model_args(p: argparse.ArgumentParser) -> None:
    """The eval preprocessing (defaults: the model's own config) and the frequency groups."""
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--resize-short", type=int, default=None, help="0: resize straight to the input size")
    p.add_argument("--interpolation", default=None, choices=["nearest", "bilinear", "bicubic", "area"])
    p.add_argument("--mean", type=float, nargs=3, default=None)
    p.add_argument("--std", type=float, nargs=3, default=None)
    p.add_argument("--many", type=int, default=None, help="many-shot: more than this many train images")
    p.add_argument("--few", type=int, default=None, help="few-shot: fewer than this many train images")


def _import_args(imp: argparse.ArgumentParser) -> None:
    imp.add_argument("--arch", dest="backbone", required=True,
                     help="classification: timm:NAME or tv:NAME; segmentation: tv:fcn_resnet50, tv:deeplabv3_resnet50, "
                          "tv:lraspp_mobilenet_v3_large, ...; detection: tv:fasterrcnn_resnet50_fpn or "
                          "tv:maskrcnn_resnet50_fpn")
    imp.add_argument("--weights", required=True, help="the trained model's weights (torch.save of its state_dict, "
                                                      "a checkpoint holding one, or .safetensors)")
    imp.add_argument("--classes", default=None,
                     help="the weights' class names, one a line, in their output order (default: the dataset's "
                          "order); matched to the dataset's classes by name")
    _model_args(imp)


def _stage2_args(s2: argparse.ArgumentParser) -> None:
    s2.add_argument("--method", default=None, choices=[*METHODS, "auto"],
                    help="auto: fit every candidate on the same stage 1, keep the best on val (never test)")
    s2.add_argument("--select", default=None,
                    help="auto: the val score that chooses: top1 (balanced, default), few, medium, many; "
                         "segmentation miou (default), tail; detection ap (default), apr")
    s2.add_argument("--checkpoint", required=True, help="stage-1 checkpoint")
    s2.add_argument("--rho", type=float, default=None,
                    help="G-RW scale: 0 instance-, 1 class-balanced (default 1.2; segmentation 0.3, as ADE20K)")
    s2.add_argument("--epochs", type=int, default=None, help="default 10 (detection 4)")
    s2.add_argument("--min-steps", type=int, default=None, help="raise epochs until this many iterations")
    s2.add_argument("--augment", action="store_true", default=None, help="recompute features from augmented images")
    s2.add_argument("--no-cache", action="store_true", default=None,
                    help="recompute features every epoch, no on-disk cache either (for timing)")
    s2.add_argument("--tau", type=float, default=None, help="logit-adjust: strength of the prior correction")


def build_parser() -> argparse.ArgumentParser:
    """Arguments of both stages."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="stage", required=True)
    common = _common_parser()
    _stage1_args(sub.add_parser("stage1", parents=[common], help="joint training on the long-tailed data"))
    _stage2_args(sub.add_parser("stage2", parents=[common], help="calibrate a frozen stage-1 model"))
    _import_args(sub.add_parser("import", parents=[common], help="an already-trained model as stage 1"))
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, find the task from the data, fill its defaults and run the stage."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[1:3] == ["--recipe", "list"]:  # before parsing: listing needs no --data / --out
        print("\n".join(recipe_lines()))
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.data and not (args.train_ann or args.val_ann):
        parser.error("give --data DIR (or, for detection, --train-ann / --val-ann with --images)")
    # the cores this process may use (taskset, cgroups); macOS and Windows have no affinity call
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(cores)
    task = find_task(args.data, annotations=bool(args.train_ann or args.val_ann))
    try:
        cfg = task.resolve(_settings(args, task))
        problem = _model_problem(args, task, cfg) if args.stage in ("stage1", "import") else None
        if problem:
            raise LtDeployError(problem)
        cfg = dataclasses.replace(cfg, device=_run_device(cfg, task, args.stage))
        init_distributed(torch.device(cfg.device))  # under torchrun: join the group before anything prints
        if isinstance(cfg, ImportConfig):
            return task.import_model(cfg)
        rc = task.stage1(cfg) if isinstance(cfg, Stage1Config) else run_auto(task, cfg) if cfg.method == "auto" \
            else run_stage2(task, cfg)
        finish(current_world())  # under torchrun: every rank done (rank 0 wrote), then leave the group
        return rc
    except LtDeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _settings(args: argparse.Namespace, task):
    """The run's config: command line > recipe > task default; a setting the task does not read is refused."""
    recipe = load_recipe(args.recipe) if args.recipe else None
    if recipe and recipe.task != task.name:
        raise LtDeployError(f"--recipe {recipe.name} trains {recipe.task}; {args.data} is {task.name} data")
    settings = {"backbone": task.models[0]} if args.stage == "stage1" else {}
    settings.update(recipe.settings(args.stage) if recipe else {})
    unused = unused_settings(task, {**settings, **given_settings(args)}, args.stage)
    if unused:
        raise LtDeployError(f"{task.name} {args.stage} does not use {', '.join(unused)} ({args.data} is "
                            f"{task.name} data)")
    return config_from_args(args, task.defaults, settings)


def _run_device(cfg, task, stage: str) -> str:
    """The device this stage runs on: --device where the stage trains there, else the CPU (`auto` falls back
    to it; a GPU asked for by name is refused in one line, as is torchrun for anything but stage 1)."""
    if launched() and stage != "stage1":
        raise LtDeployError(f"{stage} runs in one process (it fits a calibration on cached features): run it "
                            "without torchrun")
    device = resolve_device(cfg.device)
    if device.type == "cpu" or (stage != "import" and trains_on_gpu(task)):
        return str(device)
    if cfg.device != "auto":
        raise LtDeployError(f"{task.name} {stage} runs on the CPU in this version; drop --device {cfg.device}")
    return "cpu"


def _model_problem(args: argparse.Namespace, task, cfg) -> str | None:
    """What is wrong with stage 1's or import's model settings for this task (None: nothing)."""
    if (args.many is None) != (args.few is None):
        return "give both --many and --few, or neither"
    if args.stage == "import":
        return None if task.import_model else f"{task.name} has no import"
    if cfg.backbone not in task.models and not cfg.backbone.startswith(task.spec_prefixes or ("\0",)):
        specs = f", or {' / '.join(p + 'NAME' for p in task.spec_prefixes)}" if task.spec_prefixes else ""
        return f"{args.data} is {task.name} data; --backbone must be one of {', '.join(task.models)}{specs}"
    return None


if __name__ == "__main__":
    sys.exit(main())
