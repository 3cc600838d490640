"""The tables `run_accuracy.py` writes: mean ± std over seeds per method (test, with val beside it), the rho
sweep and its plot, and `--method auto` against the best single method per seed."""
from __future__ import annotations

import os

import numpy as np

GROUPS = ("top1", "many", "medium", "few")


def mean_std(rows: list[dict]) -> dict:
    """Mean and std over seeds of each metric (None where a group has no classes); `val`: the mean val top-1
    where the runs carry one."""
    out = {}
    for g in GROUPS:
        vals = [r[g] for r in rows if r[g] is not None]
        out[g] = (float(np.mean(vals)), float(np.std(vals))) if vals else None
    val = [r["val"] for r in rows if r.get("val") is not None]
    out["val"] = float(np.mean(val)) if len(val) == len(rows) else None
    return out


def markdown(title: str, table: dict[str, dict], seeds: int, thresholds: dict) -> str:
    """The table as Markdown: mean ± std in % (test), and the mean val top-1 where known."""
    with_val = any(stats.get("val") is not None for stats in table.values())
    lines = [f"### {title}", "", f"Test top-1 (%), mean ± std over {seeds} seeds; many > {thresholds['many_above']}, "
             f"few < {thresholds['few_below']} training images" + ("; val: mean balanced val top-1." if with_val
                                                                   else "."), "",
             "| method | overall | many | medium | few |" + (" val |" if with_val else ""),
             "|---|---|---|---|---|" + ("---|" if with_val else "")]
    for name, stats in table.items():
        cells = ["-" if stats[g] is None else f"{100 * stats[g][0]:.2f} ± {100 * stats[g][1]:.2f}" for g in GROUPS]
        if with_val:
            cells.append("-" if stats.get("val") is None else f"{100 * stats['val']:.2f}")
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


def auto_against_single(out: str, seeds: int, methods: list[str], results: dict) -> list[dict]:
    """Per seed: what auto chose (on val), its test top-1, the best single method's on test, DisAlign's."""
    import torch

    rows = []
    for seed in range(seeds):
        ckpt = os.path.join(out, f"seed{seed}", "auto.pt")
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
