"""Long-tail evaluation of a checkpoint (.pt) or an exported ONNX file (.onnx) on a list split.

    python training/evaluate.py runs/digits/disalign.pt --data data/digits-lt
    python training/evaluate.py runs/digits/disalign.onnx --data data/digits-lt --json runs/digits/eval.json
    python training/evaluate.py runs/digits/disalign.pt --data data/digits-lt --compare runs/digits/stage1.pt \
        --plots runs/digits/plots

Prints top-1 overall (mean of per-class accuracies on the balanced split) and on many / medium / few
classes (thresholds from the model's description), and per-class accuracy against training count.
Both forms of a model read images with the runtime's own preprocessing, so they give the same numbers.

Segmentation data (ADE20K layout) gets mIoU and mAcc overall and on head / body / tail classes by
training pixel share (> 1%, 0.1-1%, < 0.1%), on the val split by default (ADE20K's convention):

    python training/evaluate.py runs/seg/disalign.onnx --data data/seg-lt --compare runs/seg/stage1.pt

Detection data (LVIS / COCO JSON) gets LVIS-style box (and mask) AP, AP50, AP75, APr, APc, APf with
faster-coco-eval (300 detections per image, score >= 1e-4) and, for checkpoints, PwB on the val split:

    python training/evaluate.py runs/det/pcb_disalign.onnx --data data/det-lt --compare runs/det/baseline.pt
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from ltdeploy.errors import LtDeployError
from ltdeploy.files import atomic_path
from training.classification.data import make_loader
from training.classification.lists import read_split
from training.classification.metrics import ACCURACY_HEADER, format_accuracy, long_tail_accuracy
from training.detection.sources import is_det_dataset
from training.segmentation.data import is_seg_dataset


def model_outputs(model_path: str, data_dir: str, split: str, batch_size: int) -> dict:
    """Logits (N, K), labels (N,), the description and, for a DisAlign checkpoint, sigma(x) (N,)."""
    import torch

    if model_path.endswith(".onnx"):
        from ltdeploy.predictor import Predictor
        predictor = Predictor(model_path)
        desc, calibrator = predictor.description, None

        def run(x: torch.Tensor) -> tuple[np.ndarray, None]:
            return predictor.logits(x.numpy()), None
    else:
        from training.core.checkpoint import read_checkpoint
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
    from training.core import plots

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


def model_name(path: str) -> str:
    """File name without folder and suffix, for tables and plot names."""
    return os.path.splitext(os.path.basename(path))[0]


def write_json(path: str, result: dict) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(result, f, indent=1)


def main_segmentation(args: argparse.Namespace) -> int:
    """Evaluate a segmenter (and --compare) and print the mIoU / mAcc table."""
    from training.segmentation.evaluate import SEG_HEADER, evaluate_segmentation, format_seg_scores

    split = args.split or "val"
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


def main_detection(args: argparse.Namespace) -> int:
    """Evaluate a detector (and --compare) and print the LVIS AP table."""
    from training.detection.evaluate import evaluate_detection, print_det_table
    from training.detection.sources import resolve_det_source

    split = args.split or "val"
    try:
        source = resolve_det_source(args.data, None, args.val_ann, args.images)
        runs = [(p, evaluate_detection(p, source, split)) for p in ([args.compare] if args.compare else [])
                + [args.model]]
    except (LtDeployError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    res = runs[-1][1]
    desc = res["description"]
    print(f"{split}: {res['images']} images, {desc.num_classes} categories; groups by training images: "
          f"rare 1-10, common 11-100, frequent > 100; {res['detections']} detections (<= 300 per image)")
    print_det_table(runs)
    if args.json:
        write_json(args.json, {"model": args.model, "split": split, "calibration": desc.calibration,
                               **{k: v for k, v in res.items() if k != "description"}})
    return 0


def main(argv: list[str] | None = None) -> int:
    """Evaluate and print the long-tail table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="checkpoint (.pt) or exported model (.onnx)")
    p.add_argument("--data", default=None, help="dataset folder (the layout is found from it)")
    p.add_argument("--val-ann", default=None, help="detection: a val JSON (LVIS / COCO) instead of --data")
    p.add_argument("--images", default=None,
                   help="detection: with --val-ann, the folder holding val2017/ (and train2017/)")
    p.add_argument("--split", default=None, help="default: test (segmentation, detection: val)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--json", default=None, help="write the full result (per-class included) here")
    p.add_argument("--per-class", action="store_true", help="print per-class accuracy too")
    p.add_argument("--plots", default=None, help="write per-class / confusion / sigma(x) plots to this folder")
    p.add_argument("--compare", default=None, help="a second model (e.g. stage 1) to draw beside this one")
    args = p.parse_args(argv)
    if not args.data and not args.val_ann:
        p.error("give --data DIR (or, for detection, --val-ann with --images)")
    if args.val_ann or is_det_dataset(args.data):
        return main_detection(args)
    if is_seg_dataset(args.data):
        return main_segmentation(args)
    args.split = args.split or "test"
    try:
        out, acc = evaluate(args.model, args.data, args.split, args.batch_size)
        compare = None
        if args.compare:
            compare = {"name": model_name(args.compare), "acc": evaluate(args.compare, args.data, args.split,
                                                                         args.batch_size)[1]}
    except (LtDeployError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    desc = out["description"]
    many, few = desc.group_thresholds
    print(f"{args.split}: {len(out['labels'])} images, {desc.num_classes} classes; groups by training images: "
          f"many > {many} ({acc['many_classes']}), medium {few}-{many} ({acc['medium_classes']}), "
          f"few < {few} ({acc['few_classes']})")
    print(ACCURACY_HEADER)
    if compare is not None:
        print(format_accuracy(compare["name"], compare["acc"]))
    print(format_accuracy(os.path.basename(args.model), acc))
    if args.per_class:
        for name, n, a, g in zip(desc.class_names, desc.class_counts, acc["per_class"], desc.groups):
            print(f"  {name:<24} train {n:5d}  {g:<6}  {'-' if a is None else f'{100 * a:6.2f}'}")
    if args.plots:
        for path in write_plots(args.plots, model_name(args.model), out, acc, compare):
            print(f"wrote {path}")
    if args.json:
        write_json(args.json, {"model": args.model, "split": args.split, "calibration": desc.calibration,
                               "class_names": desc.class_names, "class_counts": desc.class_counts, **acc})
    return 0


if __name__ == "__main__":
    sys.exit(main())
