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
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ltdeploy.backends import load_backend
from ltdeploy.errors import LtDeployError


@dataclass
class Target:
    """Something to time: a name and a function running one batch."""

    name: str
    run: Callable[[np.ndarray], object]
    input_size: tuple[int, int]
    provider: str
    preprocess: object = None
    task: str = "classification"
    times: dict[int, list[float]] = field(default_factory=dict)


def onnx_target(path: str, threads: int, spinning: bool) -> Target:
    """An engine through ltdeploy's backend (the code path `ltdeploy predict` uses)."""
    backend = load_backend(path, threads=threads, spinning=spinning)
    desc = backend.description
    name, out = desc.input_name, desc.output_names[0]
    return Target(path, lambda x: backend.run({name: x})[out], desc.preprocess.input_size, backend.provider,
                  preprocess=desc.preprocess, task=desc.task)


def torch_target(path: str, threads: int) -> Target:
    """A checkpoint in PyTorch eager mode (inference_mode, same thread count)."""
    import torch
    from training.checkpoint import read_checkpoint

    torch.set_num_threads(threads)
    ck = read_checkpoint(path)

    detector = ck.description.task == "detection"

    def run(x: np.ndarray):
        with torch.inference_mode():
            t = torch.from_numpy(x)
            return ck.model(list(t)) if detector else ck.model(t)
    return Target(f"{path} (torch eager)", run, ck.description.preprocess.input_size, f"torch {torch.__version__} CPU",
                  preprocess=ck.description.preprocess, task=ck.description.task)


def percentiles(ms: list[float]) -> dict:
    """p50 / p90 / p99 in milliseconds."""
    a = np.asarray(ms)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)), "p99": float(np.percentile(a, 99))}


def real_inputs(paths: list[str], target: Target, batch: int) -> np.ndarray:
    """The first `batch` images (cycled) preprocessed as the target's model expects, at its input size."""
    import dataclasses

    from ltdeploy.image_io import read_image
    from ltdeploy.preprocess import preprocess_batch

    cfg = dataclasses.replace(target.preprocess, input_size=target.input_size)
    return preprocess_batch([read_image(paths[i % len(paths)]) for i in range(batch)], cfg)


def measure(targets: list[Target], batches: list[int], rounds: int, runs: int, warmup: int,
            images: list[str] | None = None) -> None:
    """Fill each target's times[batch] with per-iteration latencies (ms), interleaving targets."""
    rng = np.random.default_rng(0)
    inputs = {(id(t), b): real_inputs(images, t, b) if images else
              rng.standard_normal((b, 3, *t.input_size), dtype=np.float32) for t in targets for b in batches}
    for t in targets:
        for b in batches:
            for _ in range(warmup):
                t.run(inputs[(id(t), b)])
            t.times[b] = []
    for r in range(rounds):
        order = targets[r % len(targets):] + targets[:r % len(targets)]  # no target always runs first
        for b in batches:
            for t in order:
                x = inputs[(id(t), b)]
                for _ in range(runs):
                    start = time.perf_counter()
                    t.run(x)
                    t.times[b].append((time.perf_counter() - start) * 1e3)
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Parse, measure, print the table, write JSON."""
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
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if not args.engine and not args.torch:
        p.error("give at least one --engine or --torch")
    batches = [int(b) for b in args.batch.split(",")]
    try:
        targets = [onnx_target(e, args.threads, args.spin) for e in args.engine] + \
                  [torch_target(c, args.threads) for c in args.torch]
    except (LtDeployError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.size:
        for t in targets:
            t.input_size = (args.size, args.size)
    if any(t.task == "detection" for t in targets) and batches != [1]:
        p.error("detectors take one image at a time: use --batch 1")
    images = None
    if args.images:
        from ltdeploy.image_io import expand_sources
        images = expand_sources(args.images)
    measure(targets, batches, args.rounds, args.runs, args.warmup, images)

    import onnxruntime
    env = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
           "cpus": os.cpu_count(), "threads": args.threads, "onnxruntime": onnxruntime.__version__,
           "precision": "fp32", "ort_spinning": args.spin, "rounds": args.rounds, "runs_per_round": args.runs,
           "warmup": args.warmup, "input_size": list(targets[0].input_size),
           "inputs": f"{len(images)} images" if images else "random"}
    rows = []
    print(f"\n{env}\n")
    print(f"{'engine':<48} {'provider':<22} {'batch':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
          f"{'img/s':>8} {'ratio':>6}")
    for b in batches:
        base = float(np.median(targets[0].times[b]))
        for t in targets:
            pc = percentiles(t.times[b])
            ratio = pc["p50"] / base
            rows.append({"engine": t.name, "provider": t.provider, "batch": b, **pc,
                         "images_per_s": b / pc["p50"] * 1e3, "ratio_to_first": ratio})
            print(f"{t.name[-48:]:<48} {t.provider[:22]:<22} {b:>5} {pc['p50']:8.3f} {pc['p90']:8.3f} "
                  f"{pc['p99']:8.3f} {b / pc['p50'] * 1e3:8.1f} {ratio:6.3f}")
    if args.json:
        tmp = args.json + ".partial"
        with open(tmp, "w") as f:
            json.dump({"environment": env, "results": rows}, f, indent=1)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
