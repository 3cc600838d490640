"""Where the time of a convolutional engine goes, per kind of convolution, from ONNX Runtime's own profile:
the stem (the first convolution), depthwise and the other (pointwise / full) convolutions, and everything
else. Engines are compared side by side, with each one's ratio to the first: with an fp32 and an INT8 engine
of the same model this shows which layers INT8 speeds up on this CPU and so how low the INT8 / fp32 ratio can go.

    python benchmarks/conv_profile.py --engine runs/lite0/disalign.onnx --engine runs/lite0/disalign.int8.onnx

Each engine runs in its own session with ONNX Runtime's profiler on, --runs times on one random batch; the
kernel times are medians per node, summed per kind. The profiler adds a little time to every node alike.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile

import numpy as np

CONV_OPS = ("Conv", "FusedConv", "QLinearConv", "NchwcConv")
KINDS = ("stem", "depthwise", "pointwise / full", "other")


def _session(path: str, threads: int, tmp: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tmp, "profile")
    opts.optimized_model_filepath = os.path.join(tmp, "optimised.onnx")  # the graph as it runs: fused nodes
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def _groups(path: str) -> dict[str, int]:
    import onnx

    model = onnx.load(path)
    return {n.name: next((a.i for a in n.attribute if a.name == "group"), 1) for n in model.graph.node}


def profile(path: str, batch: int, threads: int, runs: int) -> dict[str, float]:
    """Milliseconds per run by kind of node (median kernel time of each node, summed), plus 'run': the
    median of the whole session run."""
    with tempfile.TemporaryDirectory(prefix="ltdeploy-profile-") as tmp:
        sess = _session(path, threads, tmp)
        groups = _groups(os.path.join(tmp, "optimised.onnx"))
        inp = sess.get_inputs()[0]
        x = np.random.default_rng(0).standard_normal((batch, 3, *inp.shape[2:]), dtype=np.float32)
        for _ in range(runs):
            sess.run(None, {inp.name: x})
        with open(sess.end_profiling(), encoding="utf-8") as f:
            events = json.load(f)
    per_node, order, whole = collections.defaultdict(list), [], []
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            name = e["name"][: -len("_kernel_time")]
            if name not in per_node:
                order.append((name, e["args"]["op_name"]))
            per_node[name].append(e["dur"])
        elif e.get("cat") == "Session" and e["name"] == "model_run":
            whole.append(e["dur"])
    out = dict.fromkeys(KINDS, 0.0)
    convs = [name for name, op in order if op in CONV_OPS]
    for name, op in order:
        kind = "other" if op not in CONV_OPS else "stem" if name == convs[0] else \
            "depthwise" if groups.get(name, 1) > 1 else "pointwise / full"
        out[kind] += float(np.median(per_node[name])) / 1e3
    out["run"] = float(np.median(whole)) / 1e3
    return out


def table(engines: list[str], rows: list[dict[str, float]]) -> str:
    """Milliseconds per kind, one column per engine, each later engine with its ratio to the first."""
    head = ["kind"] + [f"{os.path.basename(e)} ms" for e in engines] + [f"ratio {i + 1}" for i in
                                                                         range(1, len(engines))]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for kind in (*KINDS, "run"):
        vals = [r[kind] for r in rows]
        ratios = [f"{v / vals[0]:.2f}" if vals[0] else "" for v in vals[1:]]
        lines.append("| " + " | ".join([kind] + [f"{v:.3f}" for v in vals] + ratios) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Profile every engine, print the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", action="append", required=True, help="ONNX file (repeat); the first is the baseline")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--runs", type=int, default=200)
    args = p.parse_args(argv)
    rows = [profile(e, args.batch, args.threads, args.runs) for e in args.engine]
    print(f"batch {args.batch}, {args.threads} threads, {args.runs} profiled runs each "
          "(kernel medians per node, summed per kind; 'run': median session run)")
    print(table(args.engine, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
