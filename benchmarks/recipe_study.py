"""DisAlign's recipe examined: does DisAlign trail the re-trained classifiers because stage 1 memorises its
training split? Each variant is a `run_accuracy.py` run (3 seeds by default) on the same data: stage 1 made
to memorise less (fewer epochs, stronger augmentation, a frozen ImageNet-pretrained Lite0 with only the head
trained), another stage 2 on the default stage 1 (lr, length), and the cosine head. Writes `recipe.md` and
`recipe.json` into --out: per variant, stage 1's training accuracy, then val and test top-1 of each method.

    python benchmarks/recipe_study.py --data data/shapes-lt --out runs/recipe/shapes-lt

Every run is resumable (see run_accuracy.py); --variants picks a subset by name.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from benchmarks.run_accuracy import main as run_accuracy
from ltdeploy.files import write_json

METHODS = ("disalign", "grw-classifier", "crt", "ncm", "logit-adjust")
PROBE = "--backbone tf_efficientnet_lite0 --pretrained --freeze-backbone --input-size 64 --resize-short 0"
# name → its run_accuracy options, after the study's own (so they win); '--from-default': calibrate the
# default variant's stage-1 models instead of training new ones
VARIANTS: dict[str, list[str]] = {
    "default": [],
    "stage 1: 10 epochs": ["--stage1-epochs", "10"],
    "stage 1: shift 6": ["--stage1-args", "--shift 6"],
    "stage 1: frozen Lite0 (linear probe)": ["--stage1-epochs", "10", "--stage1-args", PROBE],
    "stage 2: lr 0.02": ["--stage2-args", "--lr 0.02", "--from-default"],
    "stage 2: lr 0.5": ["--stage2-args", "--lr 0.5", "--from-default"],
    "stage 2: 250 steps": ["--min-steps", "250", "--from-default"],
    "stage 2: 4000 steps": ["--min-steps", "4000", "--from-default"],
    "cosine head": ["--head", "cosine"],
}


def folder_name(variant: str) -> str:
    """'stage 2: lr 0.02' → 'stage-2-lr-0.02'."""
    return "".join(c if c.isalnum() or c == "." else "-" for c in variant).replace("--", "-").strip("-")


def run_variant(variant: str, args: argparse.Namespace) -> dict:
    """Run (or resume) one variant; returns its table.json."""
    extra = list(VARIANTS[variant])
    out = os.path.join(args.out, folder_name(variant))
    if "--from-default" in extra:
        extra.remove("--from-default")
        extra += ["--stage1-from", os.path.join(args.out, folder_name("default"))]
    methods = ",".join(args.methods + (["auto"] if variant == "default" and args.auto else []))
    argv = ["--data", args.data, "--out", out, "--seeds", str(args.seeds), "--methods", methods, "--rhos", "",
            "--stage1-epochs", str(args.stage1_epochs), "--min-steps", str(args.min_steps),
            *(["--hflip"] if args.hflip else []), *extra]
    print(f"=== {variant}: run_accuracy.py {' '.join(argv)}", flush=True)
    if run_accuracy(argv) != 0:
        raise SystemExit(f"error: {variant} failed")
    with open(os.path.join(out, "table.json")) as f:
        return json.load(f)


def tables(results: dict[str, dict], methods: list[str]) -> str:
    """Val and test top-1 of every method per variant, and DisAlign's gap to the best re-trained classifier."""
    lines = []
    for split, cell in (("test", lambda s: s["top1"][0]), ("val", lambda s: s["val"])):
        head = ["variant", "stage 1 train", "stage 1", *methods, "DisAlign - best of grw / cRT"]
        lines += [f"{split} top-1 (%), mean over seeds; 'stage 1 train': its accuracy in the last epoch", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for variant, doc in results.items():
            t = doc["table"]
            vals = {m: cell(t[m]) for m in ("stage1", *methods) if m in t and cell(t[m]) is not None}
            train = doc.get("stage1_train_top1")
            gap = vals["disalign"] - max(vals["grw-classifier"], vals["crt"]) if {"disalign", "grw-classifier",
                                                                                  "crt"} <= set(vals) else None
            row = [variant, "-" if train is None else f"{100 * train:.1f}"]
            row += ["-" if m not in vals else f"{100 * vals[m]:.2f}" for m in ("stage1", *methods)]
            row.append("-" if gap is None else f"{100 * gap:+.2f}")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every variant, then tabulate."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--stage1-epochs", type=int, default=30, help="where a variant does not set its own")
    p.add_argument("--min-steps", type=int, default=1000, help="stage 2, where a variant does not set its own")
    p.add_argument("--no-hflip", dest="hflip", action="store_false", help="stage 1 without horizontal flips")
    p.add_argument("--methods", type=lambda s: [m for m in s.split(",") if m], default=list(METHODS),
                   help="stage-2 methods compared in every variant")
    p.add_argument("--no-auto", dest="auto", action="store_false", help="no --method auto row on the default")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names (default: all)")
    args = p.parse_args(argv)
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if any("--from-default" in VARIANTS[v] for v in chosen) and "default" not in chosen:
        chosen.insert(0, "default")
    results = {v: run_variant(v, args) for v in chosen}
    text = tables(results, args.methods)
    with open(os.path.join(args.out, "recipe.md"), "w", encoding="utf-8") as f:
        f.write(text)
    write_json(os.path.join(args.out, "recipe.json"), {"data": args.data, "seeds": args.seeds, "variants": {
        v: {"options": VARIANTS[v], "table": r["table"], "stage1_train_top1": r.get("stage1_train_top1")}
        for v, r in results.items()}})
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
