"""What an in-engine NMS candidate cap does to the long tail.

TensorRT's NMS layer (what ONNX NonMaxSuppression becomes, at most 5000 boxes per image) and the
EfficientNMS plugin (top 4096) keep only the best-scoring candidates before suppression. Our detector sends
every (box, class) pair scoring >= 1e-4 into one class-offset NMS, and rare classes score low, so a cap
may cut them first. This evaluates a checkpoint with the top-C candidates per image kept before NMS
(C = 0: no cap, as ONNX Runtime and PyTorch run it) and reports box AP / APr / APc / APf and how many
candidates images have.

    python benchmarks/nms_cap.py runs/det/pcb_disalign.pt --data data/det-lt --caps 0,5000,4096,1000
"""
from __future__ import annotations

import argparse
import json
import sys
from types import SimpleNamespace
from unittest import mock

import numpy as np
import torch
import torchvision.models.detection.roi_heads as roi_heads
from torchvision.ops import boxes as box_ops

from training.checkpoint import read_checkpoint
from training.det_data import LVISDataset
from training.det_evaluate import score_detector
from training.det_sources import resolve_det_source


def capped_nms(cap: int, counts: list[int]):
    """torchvision's batched_nms after keeping the `cap` best-scoring candidates (0: all); records counts."""
    def nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou: float) -> torch.Tensor:
        counts.append(len(scores))
        if cap and len(scores) > cap:
            top = torch.topk(scores, cap).indices
            return top[box_ops.batched_nms(boxes[top], scores[top], idxs[top], iou)]
        return box_ops.batched_nms(boxes, scores, idxs, iou)
    return nms


def boxes_only(model) -> None:
    """Switch a Mask R-CNN's mask branch off: it does not change the boxes, and pasting 300 masks per image
    dominates CPU evaluation."""
    heads = model.net.roi_heads
    heads.mask_roi_pool = heads.mask_head = heads.mask_predictor = None
    model.arch = dict(model.arch, masks=False)


def evaluate_with_cap(model, desc, val: LVISDataset, cap: int) -> tuple[dict, list[int]]:
    """Box AP of `model` with the RoI heads' NMS capped (the RPN's own NMS is left alone)."""
    counts: list[int] = []
    ops = SimpleNamespace(**{k: getattr(box_ops, k) for k in dir(box_ops) if not k.startswith("__")})
    ops.batched_nms = capped_nms(cap, counts)
    with mock.patch.object(roi_heads, "box_ops", ops):
        scores = score_detector(model, desc, val)
    return scores, counts


def main(argv: list[str] | None = None) -> int:
    """Evaluate each cap; print a table; optionally write JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True)
    p.add_argument("--caps", default="0,5000,4096,1000", help="comma-separated; 0 = no cap")
    p.add_argument("--json")
    args = p.parse_args(argv)
    ck = read_checkpoint(args.checkpoint)
    model = ck.model
    boxes_only(model)
    val = LVISDataset(resolve_det_source(args.data), "val", ck.description.preprocess)
    rows = []
    print(f"{'cap':>6} {'AP':>7} {'APr':>7} {'APc':>7} {'APf':>7}  candidates per image (median / max / "
          f"images over cap)")
    for cap in (int(c) for c in args.caps.split(",")):
        scores, counts = evaluate_with_cap(model, ck.description, val, cap)
        box = scores["box"]
        over = sum(c > cap for c in counts) if cap else 0
        rows.append({"cap": cap, **{k: box[k] for k in ("AP", "APr", "APc", "APf")},
                     "candidates_median": float(np.median(counts)), "candidates_max": int(max(counts)),
                     "images_over_cap": over, "images": len(counts)})
        print(f"{cap or 'none':>6} {box['AP']:7.2f} {box['APr']:7.2f} {box['APc']:7.2f} {box['APf']:7.2f}  "
              f"{np.median(counts):.0f} / {max(counts)} / {over} of {len(counts)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"checkpoint": args.checkpoint, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
