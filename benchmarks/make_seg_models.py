"""Build segmentation models for the latency targets: an ADE20K-sized head (150 classes) at 512x512 on a
torchvision or LR-ASPP body, as a stage-1 checkpoint and a per-pixel DisAlign one (calibration parameters
drawn at random: only their cost matters here; `lraspp_lite0` gets the real ImageNet backbone weights).

    python benchmarks/make_seg_models.py --out runs/seg512 [--model lraspp_mobilenet_v3_large]
    python export/to_onnx.py runs/seg512/stage1.pt -o runs/seg512/stage1.onnx --verify-images 8
    python export/to_onnx.py runs/seg512/disalign.pt -o runs/seg512/disalign.onnx --verify-images 8
    python benchmarks/run_latency.py --engine runs/seg512/stage1.onnx --engine runs/seg512/disalign.onnx --batch 1
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

from ltdeploy.metadata import ModelDescription, share_thresholds
from ltdeploy.preprocess import PreprocessConfig
from training.core.calibration import random_disalign
from training.core.checkpoint import save_checkpoint
from training.core.methods import SEG_METHODS, build_calibrator
from training.segmentation.bodies import SEG_BODIES, SEG_PREPROCESS
from training.segmentation.model import LTSegmenter


def main(argv: list[str] | None = None) -> int:
    """Write stage1.pt and disalign.pt under --out."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--model", default="lraspp_mobilenet_v3_large", choices=list(SEG_BODIES))
    p.add_argument("--classes", type=int, default=150, help="ADE20K has 150")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--data", default="data/seg-lt", help="recorded as the dataset (export verifies on it)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    model = LTSegmenter(args.model, args.classes, pretrained=args.model == "lraspp_lite0").eval()
    _, interp, mean, std = SEG_PREPROCESS.get(args.model, SEG_PREPROCESS["torchvision"])
    cfg = PreprocessConfig((args.size, args.size), 0, interp, mean, std)
    counts = [int(1e9 * 0.95 ** i) for i in range(args.classes)]  # a long tail of pixel counts, for the groups
    names = [f"class_{i}" for i in range(args.classes)]

    def describe(calibration: dict) -> ModelDescription:
        return ModelDescription("segmentation", names, counts, share_thresholds(counts), cfg, "images", ["logits"],
                                calibration, {"dataset": os.path.abspath(args.data), "model": args.model,
                                              "note": "for latency only"})

    save_checkpoint(os.path.join(args.out, "stage1.pt"), model, describe({"method": "none"}), {})
    model.calibrator = random_disalign(build_calibrator("disalign", model.feat_dim, args.classes, SEG_METHODS))
    save_checkpoint(os.path.join(args.out, "disalign.pt"), model,
                    describe({"method": "disalign", "per_pixel": True, "note": "random parameters"}), {})
    print(f"wrote {args.out}/stage1.pt and {args.out}/disalign.pt ({args.model}, {args.classes} classes, "
          f"{args.size}x{args.size})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
