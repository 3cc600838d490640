"""A bounded Triton load test on loopback: export a repository, serve it with a real tritonserver (the
nvidia-pytriton wheel's, Python backend, CPU), and send N requests from K concurrent clients.

    python benchmarks/triton_load.py --engine runs/digits/disalign.onnx --images data/digits-lt/test \
        --requests 500 --concurrency 8 --json runs/triton_load.json

Reports errors, client-side latency p50 / p90 / p99, throughput, and Triton's own split of each request
into queue and compute time (its statistics endpoint, as perf_analyzer reports it). The serving Python
is `.venv-triton/bin/python` (`make triton-env`) unless --python says otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from benchmarks.local_triton import LocalTriton
from ltdeploy.errors import LtDeployError
from ltdeploy.image_io import expand_sources
from ltdeploy.triton.client import connect, infer_images
from ltdeploy.triton.repository import model_name_for, write_repository

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def server_split(client, model: str) -> dict:
    """Triton's cumulative per-request queue and compute time for `model`, in ms per request."""
    stats = client.get_inference_statistics(model)["model_stats"][0]["inference_stats"]
    n = max(1, int(stats["success"]["count"]))
    ms = {k: int(stats[k]["ns"]) / n / 1e6 for k in ("queue", "compute_input", "compute_infer", "compute_output")}
    return {"requests": n, **{f"{k}_ms": round(v, 3) for k, v in ms.items()}}


def run_load(url: str, model: str, payloads: list[bytes], requests: int, concurrency: int) -> dict:
    """Send `requests` single-image requests from `concurrency` threads; latency and error figures."""
    local = threading.local()  # tritonclient.http runs on gevent: a client belongs to the thread that made it

    def one(i: int) -> tuple[float, bool]:
        if not hasattr(local, "client"):
            local.client = connect(url)
        start = time.perf_counter()
        try:
            out = infer_images(local.client, model, [payloads[i % len(payloads)]])
            ok = "error" not in out[0]
        except Exception:  # any transport or server error counts; the figure is the error count
            ok = False
        return (time.perf_counter() - start) * 1e3, ok

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    ms = np.array([r[0] for r in results])
    return {"requests": requests, "concurrency": concurrency, "errors": sum(not r[1] for r in results),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p90_ms": round(float(np.percentile(ms, 90)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "throughput_rps": round(requests / wall, 1),
            "wall_s": round(wall, 2)}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", required=True)
    p.add_argument("--images", nargs="+", required=True, help="image files or folders to send (cycled)")
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--python", default=os.path.join(ROOT, ".venv-triton", "bin", "python"),
                   help="the serving environment's interpreter (needs ltdeploy and numpy < 2)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    try:
        paths = expand_sources(args.images)[:256]
        payloads = [open(f, "rb").read() for f in paths]
        model = model_name_for(args.engine)
        with tempfile.TemporaryDirectory(prefix="ltdeploy-repo-") as repo:
            write_repository(args.engine, repo, name=model, max_batch=args.max_batch, instances=args.instances,
                             layout="python")
            with LocalTriton(repo, args.python) as server:
                client = connect(server.url)
                run_load(server.url, model, payloads, min(20, args.requests), 2)  # warm-up
                before = server_split(client, model)
                figures = run_load(server.url, model, payloads, args.requests, args.concurrency)
                after = server_split(client, model)
                meta = client.get_server_metadata()
    except (LtDeployError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = after["requests"] - before["requests"]
    split = {k: round((after[k] * after["requests"] - before[k] * before["requests"]) / max(1, n), 3)
             for k in after if k.endswith("_ms")}
    doc = {"engine": args.engine, "server": f"tritonserver {meta['version']} (nvidia-pytriton, Python backend, CPU)",
           "layout": "python", "max_batch": args.max_batch, "instances": args.instances, "images": len(payloads),
           "client": figures, "server_per_request": split}
    print(f"{figures['requests']} requests, {figures['concurrency']} clients: {figures['errors']} errors, "
          f"p50 {figures['p50_ms']} ms, p90 {figures['p90_ms']} ms, p99 {figures['p99_ms']} ms, "
          f"{figures['throughput_rps']} req/s; server per request: queue {split['queue_ms']} ms, "
          f"compute {split['compute_infer_ms']} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 0 if figures["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
