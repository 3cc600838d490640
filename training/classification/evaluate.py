"""Classification evaluation: top-1 overall (mean of per-class accuracies on the balanced split) and on
many / medium / few classes, for a checkpoint or its ONNX export (both read images with the runtime's own
preprocessing, so they give the same numbers); per-class accuracy against training count as plots."""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from ltdeploy.datasets.classification_sets import read_split
from ltdeploy.errors import LtDeployError
from ltdeploy.evaluation.accuracy import ACCURACY_HEADER, format_accuracy, long_tail_accuracy
from ltdeploy.files import write_json
from training.core.reports import model_name, print_auto_choice


def model_outputs(model_path: str, data_dir: str, split: str, batch_size: int) -> dict:
    """Logits (N, K), labels (N,), the description and, for a DisAlign checkpoint, sigma(x) (N,)."""
    if model_path.endswith(".onnx"):
        from ltdeploy.evaluation.classification import engine_logits
        from ltdeploy.predictor import Predictor
        predictor = Predictor(model_path)
        desc = predictor.description
        data = read_split(data_dir, split, num_classes=desc.num_classes)
        return {"logits": engine_logits(predictor, data.paths, batch_size), "labels": data.labels,
                "description": desc, "sigma": None}
    import torch

    from training.checkpoints import read_checkpoint
    from training.classification.data import make_loader
    ck = read_checkpoint(model_path)
    desc, model = ck.description, ck.model
    calibrator = model.calibrator if hasattr(model.calibrator, "sigma") else None

    def run(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        with torch.no_grad():
            feat = model.forward_features(x)
            sig = calibrator.sigma(feat)[:, 0].numpy() if calibrator is not None else None
            return model.forward_head(feat).numpy(), sig
    data = read_split(data_dir, split, num_classes=desc.num_classes)
    outs = [run(x) for x, _ in make_loader(data, desc.preprocess, batch_size, shuffle=False, desc=split)]
    sigma = np.concatenate([s for _, s in outs]) if calibrator is not None else None
    return {"logits": np.concatenate([o for o, _ in outs]), "labels": data.labels, "description": desc,
            "sigma": sigma}


def write_plots(folder: str, name: str, out: dict, acc: dict, compare: dict | None) -> list[str]:
    """Per-class accuracy vs training count (against --compare when given), confusion, sigma(x)."""
    from ltdeploy.evaluation import plots

    desc = out["description"]
    curves = {}
    if compare is not None:
        curves[compare["name"]] = compare["acc"]["per_class"]
    curves[name] = acc["per_class"]
    written = [plots.per_class_accuracy(curves, desc.class_counts, tuple(desc.group_thresholds),
                                        os.path.join(folder, f"{name}_per_class.png")),
               plots.confusion_matrix(out["logits"].argmax(1), out["labels"], desc.class_counts,
                                      os.path.join(folder, f"{name}_confusion.png"), title=f"{name}: confusion")]
    if out["sigma"] is not None:
        written.append(plots.sigma_distribution(out["sigma"], desc.groups, out["labels"],
                                                os.path.join(folder, f"{name}_sigma.png")))
    return written


def evaluate(model_path: str, data_dir: str, split: str = "test", batch_size: int = 128) -> tuple[dict, dict]:
    """(model outputs, long-tail accuracy) of one model on one split."""
    out = model_outputs(model_path, data_dir, split, batch_size)
    desc = out["description"]
    acc = long_tail_accuracy(out["logits"].argmax(1), out["labels"], desc.class_counts,
                             tuple(desc.group_thresholds))
    return out, acc


def report(args: argparse.Namespace) -> int:
    """Evaluate a classifier (and --compare), print the long-tail table and write plots / JSON."""
    split = args.split
    try:
        out, acc = evaluate(args.model, args.data, split, args.batch_size)
        compare = None
        if args.compare:
            compare = {"name": model_name(args.compare), "acc": evaluate(args.compare, args.data, split,
                                                                         args.batch_size)[1]}
    except (LtDeployError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    desc = out["description"]
    _print_table(args, split, out, acc, compare)
    if args.plots:
        for path in write_plots(args.plots, model_name(args.model), out, acc, compare):
            print(f"wrote {path}")
    if args.json:
        write_json(args.json, {"model": args.model, "split": split, "calibration": desc.calibration,
                               "class_names": desc.class_names, "class_counts": desc.class_counts, **acc})
    return 0


def _print_table(args: argparse.Namespace, split: str, out: dict, acc: dict, compare: dict | None) -> None:
    desc = out["description"]
    many, few = desc.group_thresholds
    print(f"{split}: {len(out['labels'])} images, {desc.num_classes} classes; groups by training images: "
          f"many > {many} ({acc['many_classes']}), medium {few}-{many} ({acc['medium_classes']}), "
          f"few < {few} ({acc['few_classes']})")
    print_auto_choice(desc.calibration)
    print(ACCURACY_HEADER)
    if compare is not None:
        print(format_accuracy(compare["name"], compare["acc"]))
    print(format_accuracy(os.path.basename(args.model), acc))
    if args.per_class:
        for name, n, a, g in zip(desc.class_names, desc.class_counts, acc["per_class"], desc.groups):
            print(f"  {name:<24} train {n:5d}  {g:<6}  {'-' if a is None else f'{100 * a:6.2f}'}")
