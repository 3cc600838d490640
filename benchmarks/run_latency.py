"""Latency and throughput of engines (and optionally PyTorch eager), interleaved so ratios hold.

    python benchmarks/run_latency.py --engine stage1.onnx --engine disalign.onnx --batch 1,32 \
        --torch runs/digits/disalign.pt --json runs/latency.json

Each round runs every (engine, batch) pair for --runs timed iterations, one pair after another, so a
slow moment of a noisy machine hits all of them alike. Reports p50 / p90 / p99 latency per batch,
images/s at the median, and each engine's median ratio to the first engine at the same batch. `--size` times graphs with a dynamic
height and width (segmentation) at another input size, e.g. `--size 512`.

Inputs are random unless `--images` gives real ones (preprocessed as each model expects). Detectors
should be timed on real images, one at a time (their cost depends on how many boxes reach NMS):

    python benchmarks/run_latency.py --engine runs/det/pcb_disalign.onnx --torch runs/det/pcb_disalign.pt \
        --batch 1 --images data/det-lt/images/val

On a GPU (plans run on TensorRT; `--device cuda|tensorrt` puts .onnx engines on ONNX Runtime's CUDA or
TensorRT provider), each TensorRT row also gets the GPU-only time of the same batch (CUDA events around
the enqueue, copies excluded) and, with `--trtexec`, trtexec's GPU compute median for the same plan:

    python benchmarks/run_latency.py --engine stage1.trt --engine disalign.trt --engine disalign.fp16.trt \
        --batch 1,8,32 --images data/val --end-to-end --trtexec --json runs/latency_gpu.json

`--end-to-end` adds rows timing what `ltdeploy predict` does per batch: decoding the encoded images,
preprocessing, copies, inference and post-processing (needs --images).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Callable

import numpy as np

from benchmarks.gpu_figures import gpu_environment, trtexec_figure
from benchmarks.latency_targets import Target, engine_target, torch_target
from ltdeploy.errors import LtDeployError
from ltdeploy.files import atomic_path
from ltdeploy.tasks import task_spec


def percentiles(ms: list[float]) -> dict:
    """p50 / p90 / p99 in milliseconds."""
    a = np.asarray(ms)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)), "p99": float(np.percentile(a, 99))}


def real_inputs(paths: list[str], target: Target, batch: int) -> np.ndarray:
    """The first `batch` images (cycled) preprocessed as the target's model expects, at its input size
    (detectors: the first image, at its own fitted size)."""
    import dataclasses

    from ltdeploy.image_io import read_image
    from ltdeploy.preprocess import preprocess_batch, preprocess_image

    if target.preprocess.resize == "fit":
        if batch != 1:
            raise SystemExit("error: detectors take one image at a time: use --batch 1")
        return preprocess_image(read_image(paths[0]), target.preprocess)[None]
    cfg = dataclasses.replace(target.preprocess, input_size=target.input_size)
    return preprocess_batch([read_image(paths[i % len(paths)]) for i in range(batch)], cfg)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def measure(targets: list[Target], batches: list[int], rounds: int, runs: int, warmup: int,
            images: list[str] | None = None, end_to_end: bool = False) -> None:
    """Fill each target's times[batch] (and gpu_times / e2e_times where they apply) with per-iteration
    latencies (ms), interleaving targets."""
    rng = np.random.default_rng(0)
    inputs = {(id(t), b): real_inputs(images, t, b) if images else
              rng.standard_normal((b, 3, *t.input_size), dtype=np.float32) for t in targets for b in batches}
    encoded = [open(images[i % len(images)], "rb").read() for i in range(max(batches))] if end_to_end else []
    for t in targets:
        for b in batches:
            for _ in range(warmup):
                t.run(inputs[(id(t), b)])
                if t.gpu:
                    t.gpu(inputs[(id(t), b)])
                if end_to_end and t.e2e:
                    t.e2e(encoded[:b])
            t.times[b], t.gpu_times[b], t.e2e_times[b] = [], [], []
    for r in range(rounds):
        order = targets[r % len(targets):] + targets[:r % len(targets)]  # no target always runs first
        for b in batches:
            for t in order:
                x = inputs[(id(t), b)]
                t.times[b] += [_timed(lambda: t.run(x)) for _ in range(runs)]
                if t.gpu:
                    t.gpu_times[b] += [t.gpu(x) for _ in range(runs)]
                if end_to_end and t.e2e:
                    t.e2e_times[b] += [_timed(lambda: t.e2e(encoded[:b])) for _ in range(runs)]
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", action="append", default=[], help="engine file (repeat); the first is the baseline")
    p.add_argument("--torch", action="append", default=[], help="checkpoint to time in PyTorch eager (repeat)")
    p.add_argument("--batch", default="1,32", help="comma-separated batch sizes")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=20, help="timed iterations per pair per round")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--spin", action="store_true",
                   help="let ONNX Runtime's idle threads spin (off by default: spinning pools of interleaved "
                        "sessions steal each other's cores)")
    p.add_argument("--size", type=int, default=None,
                   help="input side in pixels instead of the model's own (segmentation graphs take any size)")
    p.add_argument("--images", nargs="+", default=None, help="time on these images (files or folders)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "tensorrt"],
                   help="auto: .onnx on the CPU, plans on the GPU; cuda / tensorrt: ONNX Runtime's GPU providers")
    p.add_argument("--end-to-end", action="store_true",
                   help="also time decode + preprocess + inference + post-processing per batch (needs --images)")
    p.add_argument("--trtexec", action="store_true", help="add trtexec's figure for each plan (if on PATH)")
    p.add_argument("--json", default=None)
    return p


def print_table(targets: list[Target], batches: list[int], env: dict, trtexec: bool) -> list[dict]:
    """Print one row per (batch, engine, kind of time) against the first engine; return the rows."""
    rows = []
    print(f"\n{env}\n")
    print(f"{'engine':<44} {'provider':<22} {'prec':<4} {'time':<10} {'batch':>5} {'p50 ms':>8} {'p90 ms':>8} "
          f"{'p99 ms':>8} {'img/s':>8} {'ratio':>6}")
    for b in batches:
        base = float(np.median(targets[0].times[b]))
        for t in targets:
            for kind, times in (("engine", t.times[b]), ("gpu-only", t.gpu_times[b]), ("end-to-end", t.e2e_times[b])):
                if not times:
                    continue
                pc = percentiles(times)
                ratio = pc["p50"] / base
                row = {"engine": t.name, "provider": t.provider, "precision": t.precision, "time": kind,
                       "batch": b, **pc, "images_per_s": b / pc["p50"] * 1e3, "ratio_to_first": ratio}
                if kind == "gpu-only" and trtexec and t.plan:
                    row["trtexec"] = trtexec_figure(t.plan, t.input_name, (b, 3, *t.input_size))
                rows.append(row)
                print(f"{t.name[-44:]:<44} {t.provider[:22]:<22} {t.precision:<4} {kind:<10} {b:>5} "
                      f"{pc['p50']:8.3f} {pc['p90']:8.3f} {pc['p99']:8.3f} {b / pc['p50'] * 1e3:8.1f} {ratio:6.3f}")
    return rows


def main(argv: list[str] | None = None) -> int:
    """Parse, measure, print the table, write JSON."""
    p = build_parser()
    args = p.parse_args(argv)
    if not args.engine and not args.torch:
        p.error("give at least one --engine or --torch")
    batches = [int(b) for b in args.batch.split(",")]
    try:
        targets = [engine_target(e, args.threads, args.spin, args.device) for e in args.engine] + \
                  [torch_target(c, args.threads) for c in args.torch]
    except (LtDeployError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.size:
        for t in targets:
            t.input_size = (args.size, args.size)
    if any(task_spec(t.task).one_image_per_call for t in targets) and batches != [1]:
        p.error("detectors take one image at a time: use --batch 1")
    images = None
    if args.images:
        from ltdeploy.image_io import expand_sources
        images = expand_sources(args.images)
    if args.end_to_end and not images:
        p.error("--end-to-end times real decoding: give --images")
    measure(targets, batches, args.rounds, args.runs, args.warmup, images, args.end_to_end)

    import onnxruntime
    env = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
           "cpus": os.cpu_count(), "threads": args.threads, "onnxruntime": onnxruntime.__version__,
           "ort_spinning": args.spin, "rounds": args.rounds, "runs_per_round": args.runs,
           "warmup": args.warmup, "input_size": list(targets[0].input_size),
           "inputs": f"{len(images)} images" if images else "random", **gpu_environment(targets)}
    rows = print_table(targets, batches, env, args.trtexec)
    if args.json:
        with atomic_path(args.json) as tmp, open(tmp, "w") as f:
            json.dump({"environment": env, "results": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
