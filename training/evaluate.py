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
import sys

from training.tasks import find_task


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
    task = find_task(args.data, annotations=bool(args.val_ann))
    args.split = args.split or task.eval_split
    return task.report(args)


if __name__ == "__main__":
    sys.exit(main())
