"""Compare every stage-2 method on the same stage-1 models: a Table-1-style table over seeds, the rho
sweep, the plots, and optionally stage-2 time with and without the feature cache.

    python benchmarks/run_accuracy.py --data data/shapes-lt --seeds 3 --out runs/accuracy/shapes-lt
    python benchmarks/run_accuracy.py --data data/shapes-lt --seeds 3 --head cosine --out runs/accuracy/shapes-lt-cos

Each seed trains one stage-1 model; every method calibrates that same model and is evaluated on the
balanced test split. Hyper-parameters are never chosen on test (tau-norm picks tau on val). Resumable:
a run whose checkpoint and evaluation already exist under --out is reused (delete it to redo).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

import numpy as np
from tqdm import tqdm

from ltdeploy.files import atomic_path
from training.classification.evaluate import evaluate, write_plots
from training.core.methods import METHODS
from training.train import main as train

GROUPS = ("top1", "many", "medium", "few")


def quietly(log_path: str, fn, *args):
    """Run fn with its stdout and stderr (progress bars) sent to a log file."""
    with open(log_path, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        return fn(*args)


def ensure_model(path: str, argv: list[str]) -> None:
    """Train unless the checkpoint exists."""
    if not os.path.exists(path):
        if quietly(path + ".log", train, argv) != 0:
            raise RuntimeError(f"training failed, see {path}.log")


def ensure_eval(model: str, data: str) -> dict:
    """Evaluate on test unless the result exists; returns the accuracy dict."""
    path = os.path.splitext(model)[0] + ".eval.json"
    if not os.path.exists(path):
        _, acc = quietly(model + ".log", evaluate, model, data)
        with atomic_path(path) as tmp, open(tmp, "w") as f:
            json.dump(acc, f)
    with open(path) as f:
        return json.load(f)


def mean_std(rows: list[dict]) -> dict:
    """Mean and std over seeds of each metric (None where a group has no classes)."""
    out = {}
    for g in GROUPS:
        vals = [r[g] for r in rows if r[g] is not None]
        out[g] = (float(np.mean(vals)), float(np.std(vals))) if vals else None
    return out


def markdown(title: str, table: dict[str, dict], seeds: int, thresholds: dict) -> str:
    """The table as Markdown: mean ± std in %."""
    lines = [f"### {title}", "", f"Test top-1 (%), mean ± std over {seeds} seeds; many > {thresholds['many_above']}, "
             f"few < {thresholds['few_below']} training images.", "",
             "| method | overall | many | medium | few |", "|---|---|---|---|---|"]
    for name, stats in table.items():
        cells = ["-" if stats[g] is None else f"{100 * stats[g][0]:.2f} ± {100 * stats[g][1]:.2f}" for g in GROUPS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_rho_sweep(rhos: list[float], sweep: dict, path: str) -> None:
    """Accuracy (mean and spread over seeds) of each group against rho, as a PNG."""
    from ltdeploy.evaluation.plots import rho_curve

    lines = {}
    for g in GROUPS:
        stats = [sweep[f"rho {r:g}"][g] for r in rhos]
        if all(stats):
            lines["overall" if g == "top1" else g] = ([m for m, _ in stats], [s for _, s in stats])
    rho_curve(rhos, lines, path)


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--methods", default=",".join([*METHODS, "auto"]),
                   help="comma-separated stage-2 methods; auto: the one `--method auto` picks on val")
    p.add_argument("--rhos", default="0,0.5,1,1.5,2,3", help="DisAlign rho sweep ('' to skip)")
    p.add_argument("--stage1-epochs", type=int, default=30)
    p.add_argument("--hflip", action="store_true")
    p.add_argument("--head", default="linear", choices=["linear", "cosine"],
                   help="stage 1's classifier (cosine: the paper's DisAlign* rows)")
    p.add_argument("--min-steps", type=int, default=1000)
    p.add_argument("--time-cache", action="store_true", help="also time DisAlign stage 2 without the cache")
    return p


def run_all(args: argparse.Namespace, methods: list[str], rhos: list[float]) -> dict[tuple, dict]:
    """Train (or reuse) every (seed, method, rho) run and evaluate it on test."""
    runs = [(s, m, None) for s in range(args.seeds) for m in ["stage1"] + methods] + \
           [(s, "disalign", r) for s in range(args.seeds) for r in rhos]
    results: dict[tuple, dict] = {}
    for seed, method, rho in tqdm(runs, desc="runs", unit="run"):
        folder = os.path.join(args.out, f"seed{seed}")
        os.makedirs(folder, exist_ok=True)
        stage1 = os.path.join(folder, "stage1.pt")
        ensure_model(stage1, ["stage1", "--data", args.data, "--out", stage1, "--seed", str(seed),
                              "--epochs", str(args.stage1_epochs), "--head", args.head]
                     + (["--hflip"] if args.hflip else []))
        if method == "stage1":
            results[(seed, "stage1", None)] = ensure_eval(stage1, args.data)
            continue
        name = method if rho is None else f"disalign-rho{rho:g}"
        ckpt = os.path.join(folder, f"{name}.pt")
        extra = ["--rho", str(rho)] if rho is not None else []
        ensure_model(ckpt, ["stage2", "--method", method, "--checkpoint", stage1, "--data", args.data, "--out",
                            ckpt, "--seed", str(seed), "--min-steps", str(args.min_steps)] + extra)
        results[(seed, method, rho)] = ensure_eval(ckpt, args.data)
    return results


def main(argv: list[str] | None = None) -> int:
    """Train, calibrate, evaluate, tabulate, plot."""
    p = build_parser()
    args = p.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS and m != "auto"]
    if unknown:
        p.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}, auto")
    rhos = [float(r) for r in args.rhos.split(",") if r]
    os.makedirs(args.out, exist_ok=True)

    results = run_all(args, methods, rhos)

    thresholds = results[(0, "stage1", None)]["thresholds"]
    table = {name: mean_std([results[(s, name, None)] for s in range(args.seeds)]) for name in ["stage1"] + methods}
    report = {"data": args.data, "seeds": args.seeds, "thresholds": thresholds, "table": table,
              "methods": {m: METHODS[m].summary if m in METHODS else "best on val of every method" for m in methods}}
    text = markdown(f"{os.path.basename(os.path.normpath(args.data))}: stage-2 methods on the same stage-1 models",
                    table, args.seeds, thresholds)
    if "auto" in methods:
        report["auto"] = auto_against_single(args, methods, results)
        text += "\n" + auto_text(report["auto"])
    if rhos:
        sweep = {f"rho {r:g}": mean_std([results[(s, "disalign", r)] for s in range(args.seeds)]) for r in rhos}
        report["rho_sweep"] = sweep
        text += "\n" + markdown("DisAlign against rho (G-RW scale)", sweep, args.seeds, thresholds)
        plot_rho_sweep(rhos, sweep, os.path.join(args.out, "rho_curve.png"))
    if "disalign" in methods:
        seed0 = os.path.join(args.out, "seed0")
        out, acc = quietly(os.path.join(seed0, "plots.log"), evaluate, os.path.join(seed0, "disalign.pt"), args.data)
        write_plots(args.out, "disalign", out, acc, {"name": "stage1", "acc": results[(0, "stage1", None)]})
    if args.time_cache:
        report["stage2_seconds"] = time_cache(args)
        c = report["stage2_seconds"]
        text += (f"\nDisAlign stage 2 (seed 0, same steps): no cache {c['no_cache']:.1f} s; cold cache (one "
                 f"extraction included) {c['cold_cache']:.1f} s ({c['no_cache'] / c['cold_cache']:.1f}x faster); "
                 f"warm cache {c['warm_cache']:.1f} s ({c['no_cache'] / c['warm_cache']:.1f}x faster).\n")
    with open(os.path.join(args.out, "table.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


def auto_against_single(args: argparse.Namespace, methods: list[str], results: dict) -> list[dict]:
    """Per seed: what auto chose (on val), its test top-1, the best single method's on test, DisAlign's."""
    import torch

    rows = []
    for seed in range(args.seeds):
        ckpt = os.path.join(args.out, f"seed{seed}", "auto.pt")
        chosen = torch.load(ckpt, weights_only=True)["description"]["calibration"]["auto"]["chosen"]
        single = {m: results[(seed, m, None)]["top1"] for m in methods if m not in ("auto",)}
        best = max(single, key=single.get)
        rows.append({"seed": seed, "chosen": chosen, "auto": results[(seed, "auto", None)]["top1"],
                     "best_single": best, "best_single_top1": single[best], "disalign": single.get("disalign")})
    return rows


def auto_text(rows: list[dict]) -> str:
    """The per-seed comparison as Markdown."""
    lines = ["### --method auto against the best single method (test top-1 %, chosen on val)", "",
             "| seed | auto chose | auto | best single method on test | its top-1 | DisAlign |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        d = "-" if r["disalign"] is None else f"{100 * r['disalign']:.2f}"
        lines.append(f"| {r['seed']} | {r['chosen']} | {100 * r['auto']:.2f} | {r['best_single']} | "
                     f"{100 * r['best_single_top1']:.2f} | {d} |")
    return "\n".join(lines) + "\n"


def time_cache(args: argparse.Namespace) -> dict:
    """Wall time of DisAlign stage 2 on seed 0: cold cache (features extracted once, included), warm cache
    (features from the on-disk cache an earlier method wrote), and no cache (recomputed every epoch)."""
    import shutil

    import torch

    folder = os.path.join(args.out, "seed0")
    stage1 = os.path.join(folder, "stage1.pt")
    shutil.rmtree(stage1 + ".features", ignore_errors=True)  # derived data: start cold
    times = {}
    for label, flag in (("cold_cache", []), ("warm_cache", []), ("no_cache", ["--no-cache"])):
        ckpt = os.path.join(folder, f"timing-{label}.pt")
        if os.path.exists(ckpt):
            os.remove(ckpt)
        ensure_model(ckpt, ["stage2", "--method", "disalign", "--checkpoint", stage1, "--data", args.data,
                            "--out", ckpt, "--min-steps", str(args.min_steps)] + flag)
        times[label] = torch.load(ckpt, weights_only=True)["history"]["stage2"]["seconds_total"]
    return times


if __name__ == "__main__":
    sys.exit(main())
