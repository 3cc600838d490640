"""The user's classifier exported to ONNX the way a user does it outside ltdeploy (torch.onnx, dynamic batch), for
the `ltdeploy calibrate` example (docs/calibrate-onnx.md): the graph carries no ltdeploy description.

    python benchmarks/export_outside.py --weights runs/user.pth --arch resnet10t --classes 50 --out runs/user.onnx
"""
from __future__ import annotations

import argparse
import sys

import timm
import torch


def main(argv: list[str] | None = None) -> int:
    """Rebuild the timm model, load the state dict, export it."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="a state dict (benchmarks/train_outside.py writes one)")
    p.add_argument("--arch", default="resnet10t", help="the timm model name it was trained as")
    p.add_argument("--classes", type=int, required=True)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    model = timm.create_model(args.arch, num_classes=args.classes)
    model.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
    torch.onnx.export(model.eval(), (torch.zeros(1, 3, args.size, args.size),), args.out, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      dynamo=False)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
