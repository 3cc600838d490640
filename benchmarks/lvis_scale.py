"""Detection at LVIS scale: what 1203 classes cost a Mask R-CNN, beside 50, at its real input size.

    python benchmarks/lvis_scale.py --out runs/lvis_scale [--bodies resnet50_fpn,lite0_fpn] [--classes 1203,50]

For each body (ResNet-50-FPN at short side 800 / long side <= 1333; Lite0-FPN at its default size) and class
count, a Mask R-CNN with random weights (scale, not accuracy: every figure here is about size, time and
memory) is exported to ONNX, checked against PyTorch on photo-sized non-square scenes (640x480 and
480x640), and run in a fresh torch-free process through ltdeploy's runtime. Reported: ONNX size, export
time, ONNX Runtime latency per image (engine p50 / p90, and the whole `ltdeploy predict` path with 300
masks pasted at the photo's size), the runtime's peak resident memory, and how many (box, class)
candidates there are per image before the candidate cap and how many reach the final NMS under it.

Random weights are given BatchNorm statistics measured on the photos (otherwise a random ResNet-50's
activations grow layer by layer until every score saturates to 0 or 1 and ties decide everything). They
leave one thing open that decides the cost: how many (box, class) scores clear the 1e-4
threshold. torchvision's initial head scores every class near 1 / (K + 1), all above it: the worst case,
proposals x classes, counted in PyTorch only. The exported model gets a head shaped like a trained one:
classifier weights drawn wider (std 0.3, so scores are decisive and parity is not decided by near-ties) and
a background bias chosen so that the share of (box, class) pairs above 1e-4 is `--fraction`, what the
trained det-lt Mask R-CNN shows (default 0.034: 1675 candidates per image from 1000 proposals x 50 classes).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def count_candidates(model, images: list[np.ndarray], capped: bool = True) -> list[int]:
    """(box, class) pairs entering the RoI heads' final NMS, per image (PyTorch; the RPN's NMS not counted),
    under the model's candidate cap or, with `capped` False, without any."""
    import torch

    from benchmarks.nms_cap import counting_nms
    from training.detection.candidate_cap import CandidateCap

    with counting_nms(model, None if capped else CandidateCap(0, 0)) as counts, torch.inference_mode():
        for x in images:
            model.net([torch.from_numpy(x)])
    return counts


def probe_runtime(path: str, photos: list[str], runs: int, timeout: float, outputs: str) -> dict:
    """`measure` in a fresh torch-free process; its peak RSS is sampled from outside too, so a run stopped
    at `timeout` still reports how much memory it had taken."""
    proc = subprocess.Popen([sys.executable, __file__, "--measure", path, *photos, "--runs", str(runs),
                             "--outputs", outputs], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    start, peak_kb = time.perf_counter(), 0
    while proc.poll() is None and time.perf_counter() - start < timeout:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                peak_kb = max(peak_kb, next(int(line.split()[1]) for line in f if line.startswith("VmHWM")))
        except (OSError, StopIteration):
            pass
        time.sleep(0.5)
    if proc.poll() is None:
        proc.kill()
        proc.communicate()
        return {"timeout_s": timeout, "runtime_peak_rss_mb": round(peak_kb / 1024)}
    out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(err[-2000:])
    return json.loads(out.strip().splitlines()[-1])


def run_case(body: str, classes: int, photos: list[str], folder: str, runs: int, timeout: float,
             fraction: float, masks: bool = True) -> dict:
    """Export, parity, candidates; then the runtime's latency and memory in a fresh process."""
    from benchmarks.random_detectors import build, calibrate_batchnorm, trained_like
    from export.det_export import export_detector, parity_report, torch_detections
    from export.onnx_export import embed_description
    from ltdeploy.image_io import read_image
    from ltdeploy.preprocess import preprocess_image

    model, desc = build(body, classes, masks)
    images = [preprocess_image(read_image(p), desc.preprocess) for p in photos]
    calibrate_batchnorm(model, images)
    uniform = count_candidates(model, images, capped=False)
    bias = trained_like(model, images, fraction)
    path = os.path.join(folder, f"{body}_{classes}{'' if masks else '_boxes'}.onnx")
    start = time.perf_counter()
    export_detector(model, path, desc.preprocess.shape_range()[1], desc.input_name)
    embed_description(path, desc)
    export_s = time.perf_counter() - start
    refs = torch_detections(model, images)
    uncapped = count_candidates(model, images, capped=False)
    candidates = count_candidates(model, images)
    outputs = path.replace(".onnx", "_outputs.npz")
    runtime = probe_runtime(path, photos, runs, timeout, outputs)
    parity = None
    if "engine_ms" in runtime:  # the runtime's first outputs against PyTorch's (the probe runs without torch)
        with np.load(outputs) as z:
            gots = [{k.split("/", 1)[1]: z[k] for k in z.files if k.startswith(f"{i}/")} for i in range(len(photos))]
        r = parity_report(refs, gots, [x.shape[1:] for x in images])
        parity = {"ok": r.ok(), "compared": r.compared, "unmatched": r.unmatched,
                  "max_box_rel_diff": r.max_box_rel_diff, "max_score_diff": r.max_score_diff,
                  "max_mask_diff": r.max_mask_diff}
    return {"body": body, "classes": classes, "masks": masks, "min_size": desc.preprocess.resize_short,
            "max_size": desc.preprocess.max_size, "model_inputs": [list(x.shape[1:]) for x in images],
            "onnx_mb": round(os.path.getsize(path) / 1e6, 1), "export_s": round(export_s, 1),
            "parity": parity,
            "nms_candidates_per_image": candidates, "candidates_before_cap": uncapped,
            "candidates_initial_head": uniform,
            "background_bias": round(bias, 3), **runtime}


def measure(path: str, photos: list[str], runs: int, outputs: str) -> dict:
    """In this (torch-free) process: engine latency per image, the whole predict path, peak RSS; the first
    run's outputs go to `outputs` (npz) for the parity check."""
    from ltdeploy.backends import load_backend
    from ltdeploy.image_io import read_image
    from ltdeploy.predictor import Predictor
    from ltdeploy.preprocess import preprocess_image

    backend = load_backend(path)
    desc = backend.description
    xs = [preprocess_image(read_image(p), desc.preprocess)[None] for p in photos]
    engine, detections = [], []
    first = [backend.run({desc.input_name: x}) for x in xs]  # also the warm-up
    np.savez(outputs, **{f"{i}/{k}": v for i, out in enumerate(first) for k, v in out.items()})
    for _ in range(runs):
        for x in xs:
            start = time.perf_counter()
            out = backend.run({desc.input_name: x})
            engine.append((time.perf_counter() - start) * 1e3)
            detections.append(len(out["scores"]))
    predictor = Predictor(backend, score_threshold=1e-4, max_detections=300)  # LVIS evaluation's setting
    e2e = []
    for _ in range(max(1, runs // 2)):
        start = time.perf_counter()
        results = list(predictor.predict(photos))
        e2e.append((time.perf_counter() - start) * 1e3 / len(photos))
    assert all(hasattr(r, "objects") for r in results)
    peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
    return {"engine_ms": {"p50": float(np.percentile(engine, 50)), "p90": float(np.percentile(engine, 90))},
            "predict_ms_per_image": {"p50": float(np.percentile(e2e, 50)), "p90": float(np.percentile(e2e, 90))},
            "detections_per_image": int(np.median(detections)), "runtime_peak_rss_mb": round(peak_kb / 1024),
            "runs": runs, "providers": backend.provider}


def _parity(p: dict | None) -> str:
    if p is None:
        return "-"
    return (f"{p['compared']} dets, {p['unmatched']} unpaired, box {p['max_box_rel_diff']:.0e}, score "
            f"{p['max_score_diff']:.0e}, mask {p['max_mask_diff']:.0e}")


def _join(values) -> str:
    return ", ".join(map(str, values))


def table(rows: list[dict]) -> str:
    """A markdown table of the cases."""
    head = ("| body | classes | model input | ONNX MB | export s | parity vs PyTorch (score >= 0.05) | "
            "candidates / image before the cap (initial head) -> at NMS | "
            "engine p50 / p90 ms | predict ms / image | runtime peak RSS MB |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        inputs = _join("x".join(map(str, s[::-1])) for s in r["model_inputs"])
        candidates = (f"{_join(r['candidates_before_cap'])} ({_join(r['candidates_initial_head'])}) -> "
                      f"{_join(r['nms_candidates_per_image'])}")
        timing = (f"{r['engine_ms']['p50']:.0f} / {r['engine_ms']['p90']:.0f} | {r['predict_ms_per_image']['p50']:.0f}"
                  if "engine_ms" in r else f"not done in {r['timeout_s']:.0f} s | -")
        lines.append(f"| {r['body']}{'' if r['masks'] else ' (boxes only)'} | {r['classes']} | {inputs} "
                     f"| {r['onnx_mb']} | {r['export_s']} | {_parity(r['parity'])} | {candidates} | {timing} "
                     f"| {r['runtime_peak_rss_mb']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every (body, classes) case; print the table; write JSON and the table to --out."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/lvis_scale")
    p.add_argument("--bodies", default="resnet50_fpn,lite0_fpn")
    p.add_argument("--classes", default="1203,50")
    p.add_argument("--runs", type=int, default=3, help="timed passes over the photos")
    p.add_argument("--timeout", type=float, default=900, help="seconds the runtime probe of one case may take")
    p.add_argument("--no-masks", action="store_true", help="Faster R-CNN instead (what the mask branch costs)")
    p.add_argument("--fraction", type=float, default=0.034,
                   help="share of (box, class) pairs scoring above 1e-4 in the exported head")
    p.add_argument("--measure", nargs="+", metavar="PATH", help=argparse.SUPPRESS)  # the runtime probe
    p.add_argument("--outputs", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure[0], args.measure[1:], args.runs, args.outputs)))
        return 0
    import torch

    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(threads)
    os.makedirs(args.out, exist_ok=True)
    from benchmarks.random_detectors import scenes

    photos = scenes(os.path.join(args.out, "photos"))
    rows = []
    for body in args.bodies.split(","):
        for classes in (int(c) for c in args.classes.split(",")):
            print(f"{body}, {classes} classes ...", file=sys.stderr, flush=True)
            rows.append(run_case(body, classes, photos, args.out, args.runs, args.timeout, args.fraction,
                                 not args.no_masks))
            print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    import onnxruntime
    doc = {"threads": threads, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
           "photos": [os.path.basename(p) for p in photos], "weights": "random", "fraction": args.fraction,
           "rows": rows}
    stem = "lvis_scale" + ("_boxes" if args.no_masks else "")
    with open(os.path.join(args.out, f"{stem}.json"), "w") as f:
        json.dump(doc, f, indent=1)
    with open(os.path.join(args.out, f"{stem}.md"), "w") as f:
        f.write(table(rows) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.exit(main())
