"""LVIS-style evaluation of a detector checkpoint (.pt) or an exported ONNX file on an LVIS / COCO JSON split.

Both forms produce COCO-results detections (300 per image, score >= 1e-4) and go through the same
evaluator (faster-coco-eval, LVIS mode); the ONNX file runs through the runtime's own Predictor.
"""
from __future__ import annotations

import argparse
import os
import sys

from ltdeploy.datasets.det_sources import DetSource, resolve_det_source
from ltdeploy.errors import LtDeployError
from ltdeploy.evaluation.detection import PREDICTOR_OPTIONS, check_categories, engine_detections
from ltdeploy.evaluation.lvis_ap import lvis_ap, lvis_ground_truth
from ltdeploy.files import write_json
from ltdeploy.metadata import ModelDescription
from training.core.reports import print_auto_choice
from training.detection.data import LVISDataset
from training.detection.pcb import pairwise_bias

DET_HEADER = "model                          AP   AP50   AP75    APr    APc    APf    PwB"


def onnx_detections(path: str, dataset: LVISDataset) -> list[dict]:
    """COCO-results detections of an ONNX detector through ltdeploy's Predictor (the dataset's category ids,
    which the model's description carries)."""
    from ltdeploy.predictor import Predictor

    return engine_detections(Predictor(path, **PREDICTOR_OPTIONS), dataset.images, dataset.image_paths())


def ground_truth(dataset: LVISDataset, desc: ModelDescription):
    """The split's ground truth for LVIS-mode AP (frequencies from the model's training image counts)."""
    check_dataset(dataset, desc)
    return lvis_ground_truth(dataset.data, dict(zip(desc.class_ids, desc.class_counts)))


def check_dataset(dataset: LVISDataset, desc: ModelDescription) -> None:
    """The split must hold the model's categories, with the same ids."""
    check_categories(dataset.class_ids, desc, dataset.source.annotation_file(dataset.split))


def evaluate_detection(model_path: str, source: DetSource | str, split: str = "val") -> dict:
    """Box (and mask) AP, AP50, AP75, APr, APc, APf; PwB for checkpoints (it needs the RoI head). `source`:
    a DetSource or a dataset folder."""
    source = source if isinstance(source, DetSource) else resolve_det_source(source)
    if model_path.endswith(".onnx"):
        from ltdeploy.backends import load_backend
        desc = load_backend(model_path).description
        dataset = LVISDataset(source, split, desc.preprocess)
        gt = ground_truth(dataset, desc)
        dets, pwb, masks = onnx_detections(model_path, dataset), None, "masks" in desc.output_names
        out = {"box": lvis_ap(gt, dets, "bbox"), "pwb": pwb, "detections": len(dets), "images": len(dataset)}
        if masks:
            out["mask"] = lvis_ap(gt, dets, "segm")
        return dict(out, description=desc)
    from training.checkpoints import read_checkpoint
    ck = read_checkpoint(model_path)
    dataset = LVISDataset(source, split, ck.description.preprocess)
    return dict(score_detector(ck.model, ck.description, dataset), description=ck.description)


def score_detector(model, desc: ModelDescription, dataset: LVISDataset) -> dict:
    """The same scores for a PyTorch LTDetector in memory on a split read with its preprocessing (training
    reports with this)."""
    from training.detection.engine import detect, gt_box_confusion

    gt = ground_truth(dataset, desc)
    dets = detect(model, dataset, desc=dataset.split)
    out = {"box": lvis_ap(gt, dets, "bbox"), "pwb": round(pairwise_bias(gt_box_confusion(model, dataset)), 4),
           "detections": len(dets), "images": len(dataset)}
    if model.arch.get("masks"):
        out["mask"] = lvis_ap(gt, dets, "segm")
    return out


def format_det_row(name: str, ap: dict, pwb: float | None) -> str:
    """One table row: AP columns, then PwB ('-' where not measured)."""
    cells = "".join(f"{ap[k]:7.2f}" for k in ("AP", "AP50", "AP75", "APr", "APc", "APf"))
    return f"{name:<26}{cells}{'      -' if pwb is None else f'{pwb:7.3f}'}"


def print_det_table(runs: list[tuple[str, dict]]) -> None:
    """The box table (and the mask table when there are masks)."""
    print(DET_HEADER)
    for path, r in runs:
        print(format_det_row(os.path.basename(path), r["box"], r["pwb"]))
    if any("mask" in r for _, r in runs):
        print("mask AP:")
        for path, r in runs:
            if "mask" in r:
                print(format_det_row(os.path.basename(path), r["mask"], r["pwb"]))


def report(args: argparse.Namespace) -> int:
    """Evaluate a detector (and --compare) and print the LVIS AP table."""
    split = args.split
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
    print_auto_choice(desc.calibration)
    print_det_table(runs)
    if args.json:
        write_json(args.json, {"model": args.model, "split": split, "calibration": desc.calibration,
                               **{k: v for k, v in res.items() if k != "description"}})
    return 0
