"""Long-tail evaluation of a checkpoint (.pt) or an exported ONNX file (.onnx) on a list split.

    python training/evaluate.py runs/digits/disalign.pt --data data/digits-lt
    python training/evaluate.py runs/digits/disalign.onnx --data data/digits-lt --json runs/digits/eval.json

Prints top-1 overall (mean of per-class accuracies on the balanced split) and on many / medium / few
classes (thresholds from the model's description), and per-class accuracy against training count.
Both forms of a model read images with the runtime's own preprocessing, so they give the same numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from ltdeploy.errors import LtDeployError
from ltdeploy.metadata import ModelDescription
from training.data_lists import read_split
from training.group_metrics import ACCURACY_HEADER, format_accuracy, long_tail_accuracy
from training.image_data import make_loader


def model_logits(model_path: str, data_dir: str, split: str, batch_size: int) -> tuple[np.ndarray, np.ndarray,
                                                                                        ModelDescription]:
    """Logits (N, K), labels (N,) and the model's description, for a .pt or .onnx model."""
    if model_path.endswith(".onnx"):
        from ltdeploy.predictor import Predictor
        predictor = Predictor(model_path)
        desc = predictor.description
        run = lambda x: predictor.logits(x.numpy())  # noqa: E731
    else:
        import torch
        from training.checkpoint import read_checkpoint
        ck = read_checkpoint(model_path)
        desc = ck.description

        def run(x):
            with torch.no_grad():
                return ck.model(x).numpy()
    data = read_split(data_dir, split, num_classes=desc.num_classes)
    loader = make_loader(data, desc.preprocess, batch_size, shuffle=False, desc=split)
    logits = np.concatenate([run(x) for x, _ in loader])
    return logits, data.labels, desc


def main(argv: list[str] | None = None) -> int:
    """Evaluate and print the long-tail table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="checkpoint (.pt) or exported model (.onnx)")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--json", default=None, help="write the full result (per-class included) here")
    p.add_argument("--per-class", action="store_true", help="print per-class accuracy too")
    args = p.parse_args(argv)
    try:
        logits, labels, desc = model_logits(args.model, args.data, args.split, args.batch_size)
    except (LtDeployError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    acc = long_tail_accuracy(logits.argmax(1), labels, desc.class_counts, tuple(desc.group_thresholds))
    many, few = desc.group_thresholds
    print(f"{args.split}: {len(labels)} images, {desc.num_classes} classes; groups by training images: "
          f"many > {many} ({acc['many_classes']}), medium {few}-{many} ({acc['medium_classes']}), "
          f"few < {few} ({acc['few_classes']})")
    print(ACCURACY_HEADER)
    print(format_accuracy(os.path.basename(args.model), acc))
    if args.per_class:
        for name, n, a, g in zip(desc.class_names, desc.class_counts, acc["per_class"], desc.groups):
            print(f"  {name:<24} train {n:5d}  {g:<6}  {'-' if a is None else f'{100 * a:6.2f}'}")
    if args.json:
        result = {"model": args.model, "split": args.split, "calibration": desc.calibration,
                  "class_names": desc.class_names, "class_counts": desc.class_counts, **acc}
        tmp = args.json + ".partial"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
