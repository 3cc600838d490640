"""What INT8 costs the tail: quantize one fp32 ltdeploy ONNX several ways and score every variant with
`ltdeploy val`'s code on the same split, side by side with the fp32 engine.

    python benchmarks/int8_study.py --engine runs/digits-lt/disalign.onnx --data data/digits-lt \\
        --out runs/int8/digits-lt

Variants (each `sampling:method:scope:target[:8bit]`, default all of these; CPU weights 7-bit unless `8bit`):
balanced and instance calibration sets with MinMax on the feature extractor for ONNX Runtime's CPU kernels,
the same for TensorRT (symmetric int8, scored here on ONNX Runtime), then entropy and percentile on the balanced
set, then MinMax with every node the tool can quantize, and with 8-bit weights. TensorRT variants get a second
row, `(unfused)`: the same graph run unoptimised, Quantize / Dequantize around float operators, the exact int8
arithmetic TensorRT's kernels compute, without the 16-bit saturation of ONNX Runtime's AVX2 int8 kernels.
Writes `table.md` (the val table, differences to fp32 in points), `val.json` and
`per_class.csv` into --out, and keeps the INT8 files there.
"""
from __future__ import annotations

import argparse
import os
import time

from ltdeploy.backends.onnxruntime import OnnxRuntimeBackend
from ltdeploy.evaluation import report
from ltdeploy.evaluation.command import score_backend, score_engines
from ltdeploy.files import write_json
from ltdeploy.quantize.calibration_set import calibration_set
from ltdeploy.quantize.qdq import load_model, quantize_int8

VARIANTS = ("balanced:minmax:features:cpu", "instance:minmax:features:cpu", "balanced:minmax:features:tensorrt",
            "balanced:entropy:features:cpu", "balanced:percentile:features:cpu", "balanced:minmax:all:cpu",
            "balanced:minmax:features:cpu:8bit")


def make_variant(engine: str, data: str, out: str, spec: str, images: int, split: str, seed: int) -> tuple[str, dict]:
    """Quantize `engine` as `spec` says (reusing a file already there); returns (path, what was done)."""
    sampling, method, scope, target, *bits = spec.split(":")
    path = os.path.join(out, f"int8_{spec.replace(':', '_')}.onnx")
    _, desc = load_model(engine)
    paths, record = calibration_set(data, desc, split, images, sampling, seed)
    start = time.perf_counter()
    if not os.path.isfile(path):
        quantize_int8(engine, path, paths, record, method, scope, target, full_range=bits == ["8bit"])
    return path, {"spec": spec, "seconds": round(time.perf_counter() - start, 1), **record}


def unfused_scores(path: str, data: str, split: str | None):
    """The scores of `path` run without graph optimisation (no fused int8 kernels)."""
    return score_backend(OnnxRuntimeBackend(path, fused=False), data, split)


def main(argv: list[str] | None = None) -> int:
    """Quantize, score, tabulate."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", required=True, help="the fp32 ltdeploy ONNX file")
    p.add_argument("--data", required=True, help="dataset folder (calibration from --calib-split, scores on --split)")
    p.add_argument("--out", required=True)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--calib-images", type=int, default=64)
    p.add_argument("--calib-split", default="train")
    p.add_argument("--split", default=None, help="split to score (default: the task's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    made = [make_variant(args.engine, args.data, args.out, spec, args.calib_images, args.calib_split, args.seed)
            for spec in args.variants.split(",")]
    runs = score_engines([args.engine] + [path for path, _ in made], args.data, args.split, "cpu")
    runs = [("fp32", runs[0][1])] + [(info["spec"], s) for (_, info), (_, s) in zip(made, runs[1:])]
    runs += [(f"{info['spec']} (unfused)", unfused_scores(path, args.data, args.split))
             for path, info in made if ":tensorrt" in info["spec"]]
    text = report.table(runs)
    print(text)
    with open(os.path.join(args.out, "table.md"), "w", encoding="utf-8") as f:
        f.write(f"`{args.engine}` on {args.data} ({runs[0][1].split}, {runs[0][1].images} images); INT8 calibrated "
                f"on {args.calib_images} {args.calib_split} images (sampling:method:scope):\n\n```\n{text}\n```\n")
    write_json(os.path.join(args.out, "val.json"), dict(report.record(args.data, runs), variants=[i for _, i in made]))
    report.write_csv(os.path.join(args.out, "per_class.csv"), runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
