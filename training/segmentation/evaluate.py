"""Segmentation evaluation of a checkpoint or an ONNX file: mIoU and mAcc, overall and head / body / tail.

Prediction runs at the model's input size; the predicted label map is resized (nearest) to each label
map's own size, as `ltdeploy predict` does, and ignore pixels are skipped.
"""
from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
from tqdm import tqdm

from ltdeploy.errors import DatasetError, LtDeployError
from ltdeploy.image_io import read_image
from ltdeploy.metadata import ModelDescription
from ltdeploy.preprocess import preprocess_image
from ltdeploy.segment import label_maps
from training.core.reports import model_name, write_json
from training.segmentation.data import SegSplit, read_seg_split
from training.segmentation.metrics import ConfusionAccumulator, segmentation_scores

LabelFn = Callable[[np.ndarray], np.ndarray]  # preprocessed batch (N, 3, H, W) → label maps (N, H, W)
SEG_HEADER = f"{'model':<28} {'mIoU':>6} {'head':>6} {'body':>6} {'tail':>6}   {'mAcc':>6} {'head':>6} " \
             f"{'body':>6} {'tail':>6}"


def seg_label_fn(model_path: str) -> tuple[ModelDescription, LabelFn]:
    """The description and a batch → label-map function for a checkpoint (.pt) or an ONNX file."""
    if model_path.endswith(".onnx"):
        from ltdeploy.backends import load_backend
        backend = load_backend(model_path)
        desc = backend.description

        def run(x: np.ndarray) -> np.ndarray:
            return label_maps(backend.run({desc.input_name: x}), desc.output_names[0])
        return desc, run
    import torch

    from training.core.checkpoint import read_checkpoint
    ck = read_checkpoint(model_path)

    def run_torch(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return ck.model(torch.from_numpy(x)).argmax(1).numpy()
    return ck.description, run_torch


def seg_confusion(run: LabelFn, split: SegSplit, desc: ModelDescription, batch_size: int = 16,
                  name: str = "eval") -> np.ndarray:
    """K x K pixel confusion of a model over a split, at each label map's own size."""
    acc = ConfusionAccumulator(desc.num_classes)

    def load(i: int) -> tuple[np.ndarray, np.ndarray]:
        rgb, lab = read_image(split.images[i]), split.read_labels(i)
        if lab.shape != rgb.shape[:2]:
            raise DatasetError(f"{split.labels[i]}: label map is {lab.shape[1]}x{lab.shape[0]}, its image "
                               f"{rgb.shape[1]}x{rgb.shape[0]}")
        return preprocess_image(rgb, desc.preprocess), lab
    with ThreadPoolExecutor(2) as pool:
        for start in tqdm(range(0, len(split.images), batch_size), desc=name, unit="batch", leave=False):
            pairs = list(pool.map(load, range(start, min(start + batch_size, len(split.images)))))
            pred = run(np.stack([x for x, _ in pairs]))
            for p, (_, lab) in zip(pred, pairs):
                labels = p.astype(np.uint8 if desc.num_classes <= 256 else np.uint16)
                acc.update(desc.preprocess.geometry(*lab.shape).labels_to_image(labels), lab)
    return acc.matrix


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
    print(SEG_HEADER)
    for path, r in runs:
        print(format_seg_scores(os.path.basename(path), r))
    if args.per_class:
        for i, (name, n, g) in enumerate(zip(desc.class_names, desc.class_counts, desc.groups)):
            cells = "  ".join("-" if r["per_class_iou"][i] is None else f"{100 * r['per_class_iou'][i]:6.2f}"
                              for _, r in runs)
            print(f"  {name:<24} share {n / total:8.4%}  {g:<5} IoU {cells}")
    if args.plots:
        from training.core import plots
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
