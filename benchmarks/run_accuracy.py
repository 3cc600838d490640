"""Compare every stage-2 method on the same stage-1 models: a Table-1-style table over seeds, the rho
sweep, the plots, and optionally stage-2 time with and without the feature cache.

    python benchmarks/run_accuracy.py --data data/shapes-lt --seeds 3 --out runs/accuracy/shapes-lt
    python benchmarks/run_accuracy.py --data data/shapes-lt --seeds 3 --head cosine --out runs/accuracy/shapes-lt-cos
    python benchmarks/run_accuracy.py --data data/shapes-lt --stage1-from runs/accuracy/shapes-lt \
        --stage2-args "--lr 0.02" --out runs/accuracy/shapes-lt-lr0.02   # another stage 2 on the same stage 1

Each seed trains one stage-1 model; every method calibrates that same model and is evaluated on the
balanced test split; the val column is each run's own val score (what `--method auto` chooses by).
Hyper-parameters are never chosen on test (tau-norm picks tau on val). Resumable:
a run whose checkpoint and evaluation already exist under --out is reused (delete it to redo).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys

import numpy as np
from tqdm import tqdm

from benchmarks.accuracy_report import auto_against_single, auto_text, markdown, mean_std, plot_rho_sweep
from ltdeploy.files import atomic_path
from training.classification.evaluate import evaluate, write_plots
from training.core.methods import METHODS
from training.train import main as train


def quietly(log_path: str, fn, *args):
    """Run fn with its stdout and stderr (progress bars) sent to a log file."""
    with open(log_path, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        return fn(*args)


def ensure_model(path: str, argv: list[str]) -> None:
    """Train unless the checkpoint exists."""
    if not os.path.exists(path):
        if quietly(path + ".log", train, argv) != 0:
            raise RuntimeError(f"training failed, see {path}.log")


def ensure_eval(model: str, data: str, folder: str) -> dict:
    """Evaluate on test unless the result exists in `folder`; returns the accuracy dict, with `val` (the run's
    val top-1) and, for a stage-1 model, `train` (its training accuracy in the last epoch, augmented as it
    trained)."""
    path = os.path.join(folder, os.path.splitext(os.path.basename(model))[0] + ".eval.json")
    acc = None
    if os.path.exists(path):
        with open(path) as f:
            acc = json.load(f)
    if acc is None or "val" not in acc:  # results of an earlier version lack the run's own records
        import torch

        acc = acc or quietly(model + ".log", evaluate, model, data)[1]
        history = torch.load(model, weights_only=True)["history"]
        stage1 = history.get("stage1")
        val = (stage1 or history).get("val") or {}
        acc.update(val=val.get("top1"), train=stage1["epochs"][-1].get("train_acc") if stage1 else None)
        with atomic_path(path) as tmp, open(tmp, "w") as f:
            json.dump(acc, f)
    return acc


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
    p.add_argument("--stage1-args", default="", help="more stage-1 options, e.g. '--shift 6' (one quoted string)")
    p.add_argument("--stage2-args", default="", help="more options for every stage-2 run, e.g. '--lr 0.02'")
    p.add_argument("--stage1-from", default=None,
                   help="calibrate the stage-1 models of an earlier run (its --out) instead of training new ones")
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
        stage1 = os.path.join(args.stage1_from or args.out, f"seed{seed}", "stage1.pt")
        if args.stage1_from and not os.path.exists(stage1):
            raise SystemExit(f"error: {stage1} does not exist (--stage1-from)")
        ensure_model(stage1, ["stage1", "--data", args.data, "--out", stage1, "--seed", str(seed),
                              "--epochs", str(args.stage1_epochs), "--head", args.head]
                     + (["--hflip"] if args.hflip else []) + shlex.split(args.stage1_args))
        if method == "stage1":
            results[(seed, "stage1", None)] = ensure_eval(stage1, args.data, folder)
            continue
        name = method if rho is None else f"disalign-rho{rho:g}"
        ckpt = os.path.join(folder, f"{name}.pt")
        extra = ["--rho", str(rho)] if rho is not None else []
        ensure_model(ckpt, ["stage2", "--method", method, "--checkpoint", stage1, "--data", args.data, "--out",
                            ckpt, "--seed", str(seed), "--min-steps", str(args.min_steps)] + extra
                     + shlex.split(args.stage2_args))
        results[(seed, method, rho)] = ensure_eval(ckpt, args.data, folder)
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
    fitted = [results[(s, "stage1", None)].get("train") for s in range(args.seeds)]
    report = {"data": args.data, "seeds": args.seeds, "thresholds": thresholds, "table": table,
              "stage1_train_top1": float(np.mean(fitted)) if None not in fitted else None,
              "stage1_args": args.stage1_args, "stage2_args": args.stage2_args, "stage1_from": args.stage1_from,
              "methods": {m: METHODS[m].summary if m in METHODS else "best on val of every method" for m in methods}}
    text = markdown(f"{os.path.basename(os.path.normpath(args.data))}: stage-2 methods on the same stage-1 models",
                    table, args.seeds, thresholds)
    if report["stage1_train_top1"] is not None:
        text += (f"\nStage 1's training accuracy in its last epoch (augmented as it trained), mean over seeds: "
                 f"{100 * report['stage1_train_top1']:.2f}%.\n")
    if "auto" in methods:
        report["auto"] = auto_against_single(args.out, args.seeds, methods, results)
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


def time_cache(args: argparse.Namespace) -> dict:
    """Wall time of DisAlign stage 2 on seed 0: cold cache (features extracted once, included), warm cache
    (features from the on-disk cache an earlier method wrote), and no cache (recomputed every epoch)."""
    import shutil

    import torch

    folder = os.path.join(args.out, "seed0")
    stage1 = os.path.join(args.stage1_from or args.out, "seed0", "stage1.pt")
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
