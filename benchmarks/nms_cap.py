"""What the candidate cap before NMS does to the long tail.

TensorRT's NMS layer (what ONNX NonMaxSuppression becomes) considers at most 5000 boxes per image and its
TopK takes k <= 3840, so the exported detector caps its candidates itself (training.detection.candidates:
per class, then per image), the same in PyTorch, ONNX Runtime and TensorRT. This evaluates a checkpoint
with each cap (per_class:total; 0 turns a step off, `none` is torchvision's uncapped post-processing) and
reports box AP / APr / APc / APf and how many candidates reach NMS per image.

    python benchmarks/nms_cap.py runs/det/pcb_disalign.pt --data data/det-lt --caps none,300:3840,100:1000,0:500
    python benchmarks/nms_cap.py --scale 1203 [--body lite0_fpn]   # candidate counts only, LVIS's class count

`--scale K` counts candidates per image on benchmarks/lvis_scale.py's photo-sized scenes for a K-class
detector with random weights and a head shaped like a trained one (see lvis_scale.py), for each cap.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from unittest import mock

import numpy as np
import torch
from torchvision.ops import boxes as box_ops

import training.detection.heads as det_heads
from ltdeploy.datasets.det_sources import resolve_det_source
from training.checkpoints import read_checkpoint
from training.detection.candidate_cap import CandidateCap
from training.detection.candidates import class_offset_nms
from training.detection.data import LVISDataset
from training.detection.evaluate import score_detector

UNCAPPED_EXACT = 20000


@contextmanager
def counting_nms(model, cap: CandidateCap | None = None):
    """Within: the RoI heads' final NMS records how many candidates it gets per image (the RPN's is not
    counted), under `cap` if given. Yields the list of counts."""
    counts: list[int] = []
    heads = model.net.roi_heads
    saved = heads.candidate_cap

    def nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou: float) -> torch.Tensor:
        counts.append(len(scores))
        if len(scores) > UNCAPPED_EXACT:  # uncapped at LVIS scale: one NMS over a million boxes takes hours
            return box_ops.batched_nms(boxes, scores, idxs, iou)  # eager: one NMS per class
        return class_offset_nms(boxes, scores, idxs, iou)
    heads.candidate_cap = saved if cap is None else cap
    try:
        with mock.patch.object(det_heads, "class_offset_nms", nms):
            yield counts
    finally:
        heads.candidate_cap = saved


def parse_cap(text: str) -> CandidateCap:
    """'none' → no cap; '300:3840' → 300 per class, 3840 per image."""
    if text == "none":
        return CandidateCap(0, 0)
    per_class, total = (int(v) for v in text.split(":"))
    return CandidateCap(per_class, total)


def boxes_only(model) -> None:
    """Switch a Mask R-CNN's mask branch off: it does not change the boxes."""
    heads = model.net.roi_heads
    heads.mask_roi_pool = heads.mask_head = heads.mask_predictor = None
    model.arch = dict(model.arch, masks=False)


def count_at_scale(classes: int, body: str, caps: list[str], folder: str) -> list[dict]:
    """Candidates per image reaching NMS under each cap, for a `classes`-class detector on photo-sized scenes."""
    from benchmarks.random_detectors import build, calibrate_batchnorm, scenes, trained_like
    from ltdeploy.image_io import read_image
    from ltdeploy.preprocess import preprocess_image

    model, desc = build(body, classes)  # the same random weights as lvis_scale.py
    boxes_only(model)  # masks do not move boxes, and the mask head would be most of the time here
    images = [preprocess_image(read_image(p), desc.preprocess) for p in scenes(folder)]
    calibrate_batchnorm(model, images)
    trained_like(model, images, 0.034)
    rows = []
    for text in caps:
        with counting_nms(model, parse_cap(text)) as counts, torch.inference_mode():
            for x in images:
                model.net([torch.from_numpy(x)])
        rows.append({"cap": text, "classes": classes, "body": body, "candidates": counts})
        print(f"{text:>10}  {classes} classes ({body}): candidates at NMS per image {counts}")
    return rows


def main(argv: list[str] | None = None) -> int:
    """Evaluate each cap; print a table; optionally write JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", nargs="?")
    p.add_argument("--data")
    p.add_argument("--caps", default="none,300:3840,100:1000,0:500",
                   help="comma-separated per_class:total, or none")
    p.add_argument("--scale", type=int, help="count candidates for this many classes instead (no checkpoint)")
    p.add_argument("--body", default="lite0_fpn", help="with --scale: the detector body")
    p.add_argument("--photos", default="runs/lvis_scale/photos", help="with --scale: where the scenes are written")
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.scale:
        rows = count_at_scale(args.scale, args.body, args.caps.split(","), args.photos)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"rows": rows}, f, indent=1)
        return 0
    if not (args.checkpoint and args.data):
        p.error("a checkpoint and --data, or --scale K")
    ck = read_checkpoint(args.checkpoint)
    model = ck.model
    boxes_only(model)
    val = LVISDataset(resolve_det_source(args.data), "val", ck.description.preprocess)
    rows = []
    print(f"{'cap':>10} {'AP':>7} {'APr':>7} {'APc':>7} {'APf':>7}  candidates at NMS per image (median / max)")
    for text in args.caps.split(","):
        cap = parse_cap(text)
        with counting_nms(model, cap) as counts:
            box = score_detector(model, ck.description, val)["box"]
        rows.append({"cap": text, "per_class": cap.per_class, "total": cap.total,
                     **{k: box[k] for k in ("AP", "APr", "APc", "APf")},
                     "candidates_median": float(np.median(counts)), "candidates_max": int(max(counts)),
                     "images": len(counts)})
        print(f"{text:>10} {box['AP']:7.2f} {box['APr']:7.2f} {box['APc']:7.2f} {box['APf']:7.2f}  "
              f"{np.median(counts):.0f} / {max(counts)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"checkpoint": args.checkpoint, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
