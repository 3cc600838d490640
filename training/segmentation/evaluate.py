"""Segmentation evaluation of a checkpoint or an ONNX file: mIoU and mAcc, overall and head / body / tail.

Prediction runs at the model's input size; the predicted label map is resized (nearest) to each label
map's own size, as `ltdeploy predict` does, and ignore pixels are skipped.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from tqdm import tqdm

from ltdeploy.datasets.seg_folders import SegSplit, read_seg_split
from ltdeploy.errors import LtDeployError
from ltdeploy.evaluation.seg_scores import segmentation_scores
from ltdeploy.evaluation.segmentation import LabelFn, engine_labels
from ltdeploy.evaluation.segmentation import seg_confusion as confusion
from ltdeploy.files import write_json
from ltdeploy.metadata import ModelDescription
from training.core.reports import model_name, print_auto_choice

SEG_HEADER = f"{'model':<28} {'mIoU':>6} {'head':>6} {'body':>6} {'tail':>6}   {'mAcc':>6} {'head':>6} " \
             f"{'body':>6} {'tail':>6}"


def seg_label_fn(model_path: str) -> tuple[ModelDescription, LabelFn]:
    """The description and a batch → label-map function for a checkpoint (.pt) or an ONNX file."""
    if model_path.endswith(".onnx"):
        from ltdeploy.predictor import Predictor
        predictor = Predictor(model_path)
        return predictor.description, engine_labels(predictor)
    import torch

    from training.checkpoints import read_checkpoint
    ck = read_checkpoint(model_path)

    def run_torch(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return ck.model(torch.from_numpy(x)).argmax(1).numpy()
    return ck.description, run_torch


def seg_confusion(run: LabelFn, split: SegSplit, desc: ModelDescription, batch_size: int = 16,
                  name: str = "eval") -> np.ndarray:
    """The runtime's pixel confusion (ltdeploy.evaluation.segmentation), with a progress bar."""
    with tqdm(total=len(split.images), desc=name, unit="img", leave=False) as bar:
        return confusion(run, split, desc, batch_size, bar.update)


def evaluate_segmentation(model_path: str, data_dir: str, split: str = "val", batch_size: int = 16) -> dict:
    """mIoU / mAcc overall and per group, per-class IoU, the description and the confusion matrix."""
    desc, run = seg_label_fn(model_path)
    data = read_seg_split(data_dir, split)
    if data.class_names != desc.class_names:
        raise ValueError(f"{data_dir}: its {len(data.class_names)} class names differ from the model's "
                         f"{desc.num_classes}")
    matrix = seg_confusion(run, data, desc, batch_size, split)
    return {"description": desc, "confusion": matrix, "images": len(data.images),
            **segmentation_scores(matrix, desc.groups)}


def format_seg_scores(name: str, s: dict) -> str:
    """One table row: mIoU overall / head / body / tail, then mAcc likewise (in %)."""
    def pct(v: float | None) -> str:
        return "   -  " if v is None else f"{100 * v:6.2f}"
    iou = " ".join(pct(s[k]) for k in ("mIoU", "head_mIoU", "body_mIoU", "tail_mIoU"))
    acc = " ".join(pct(s[k]) for k in ("mAcc", "head_mAcc", "body_mAcc", "tail_mAcc"))
    return f"{name:<28} {iou}   {acc}"


def report(args: argparse.Namespace) -> int:
    """Evaluate a segmenter (and --compare) and print the mIoU / mAcc table."""
    split = args.split
    try:
        runs = [(args.compare, evaluate_segmentation(args.compare, args.data, split, args.batch_size))] \
            if args.compare else []
        res = evaluate_segmentation(args.model, args.data, split, args.batch_size)
    except (LtDeployError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runs.append((args.model, res))
    desc = res["description"]
    above, below = desc.group_thresholds
    total = sum(desc.class_counts)
    print(f"{split}: {res['images']} images, {desc.num_classes} classes; groups by training pixel share: "
          f"head > {above / total:.2%} ({res['head_classes']}), body ({res['body_classes']}), "
          f"tail < {below / total:.2%} ({res['tail_classes']})")
    print_auto_choice(desc.calibration)
    print(SEG_HEADER)
    for path, r in runs:
        print(format_seg_scores(os.path.basename(path), r))
    if args.per_class:
        for i, (name, n, g) in enumerate(zip(desc.class_names, desc.class_counts, desc.groups)):
            cells = "  ".join("-" if r["per_class_iou"][i] is None else f"{100 * r['per_class_iou'][i]:6.2f}"
                              for _, r in runs)
            print(f"  {name:<24} share {n / total:8.4%}  {g:<5} IoU {cells}")
    if args.plots:
        from ltdeploy.evaluation import plots
        name = model_name(args.model)
        curves = {model_name(path): r["per_class_iou"] for path, r in runs}
        for path in (plots.per_class_accuracy(curves, desc.class_counts, (above, below),
                                              os.path.join(args.plots, f"{name}_per_class_iou.png"),
                                              groups=desc.group_names, unit="training pixels",
                                              metric=f"{split} IoU (%)"),
                     plots.confusion_from_matrix(res["confusion"], desc.class_counts,
                                                 os.path.join(args.plots, f"{name}_confusion.png"),
                                                 title=f"{name}: pixel confusion")):
            print(f"wrote {path}")
    if args.json:
        write_json(args.json, {"model": args.model, "split": split, "calibration": desc.calibration,
                               "class_names": desc.class_names, "class_counts": desc.class_counts,
                               "confusion": res["confusion"].tolist(),
                               **{k: v for k, v in res.items() if k not in ("description", "confusion")}})
    return 0
