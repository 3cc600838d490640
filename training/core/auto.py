"""`train.py stage2 --method auto`: every candidate calibration of the task fitted on the same frozen stage 1,
each scored on the validation split (never test), the best kept. Candidates come cheapest graph first and a
later one must score strictly higher to win, so ties go to the cheaper graph. The checkpoint records the whole
comparison (history `auto`) and the choice (description `calibration.auto`, which `ltdeploy info` and
`evaluate.py` print)."""
from __future__ import annotations

import dataclasses
import math
import sys
from typing import TYPE_CHECKING

from training.config import Stage2Config
from training.core.stage2 import fit_stage2, save_stage2

if TYPE_CHECKING:
    from training.core.task import Task


def candidate_label(method: str, overrides: dict) -> str:
    """'disalign rho=1.5', 'crt'."""
    return " ".join([method] + [f"{k}={v}" for k, v in sorted(overrides.items())])


def val_score(scores: dict | None, key: str) -> float | None:
    """`key` of a val record; a dotted key reads a nested one ('box.APr')."""
    for part in key.split("."):
        if not isinstance(scores, dict):
            return None
        scores = scores.get(part)
    return None if scores is None else float(scores)


def flat_scores(record: dict, prefix: str = "") -> dict[str, float]:
    """The numbers of a val record, nested keys dotted ('box.APr'): every score of a candidate, kept beside
    the one that chose."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(flat_scores(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = float(value)
    return out


def val_noise(scores: dict, key: str) -> float | None:
    """The standard error of val's top-1, sqrt(p (1 - p) / n) over its n images (None for other scores).

    Val splits hold the same number of images per class, so balanced top-1 is a plain mean over the n images
    and the binomial error applies; a group's score (few, tail) averages too few classes for it."""
    n = scores.get("samples")
    if key != "top1" or not n:
        return None
    p = scores["top1"]
    return math.sqrt(p * (1 - p) / n)


def run_auto(task: "Task", cfg: Stage2Config) -> int:
    """Fit every candidate, keep the one with the best val score (`cfg.select`), save it."""
    if task.auto_candidates is None or not task.auto_select:
        print(f"error: --method auto is not available for {task.name}", file=sys.stderr)
        return 2
    select = cfg.select or next(iter(task.auto_select))
    if select not in task.auto_select:
        print(f"error: {task.name} selects by {', '.join(task.auto_select)}, not {select}", file=sys.stderr)
        return 2
    key = task.auto_select[select]
    best, chosen, rows = None, None, []
    for method, overrides in task.auto_candidates(cfg):
        label = candidate_label(method, overrides)
        print(f"auto: {label}")
        fitted = fit_stage2(task, dataclasses.replace(cfg, method=method, **overrides))
        if isinstance(fitted, int):
            return fitted
        score = val_score(fitted.history.get("val"), key)
        if score is None:
            print(f"error: {label} has no val score {key!r} (a val split is needed for --method auto)",
                  file=sys.stderr)
            return 2
        rows.append({"candidate": label, "method": method, **overrides, "val": score,
                     "scores": flat_scores(fitted.history["val"]), "seconds": fitted.seconds})
        if chosen is None or score > chosen["val"]:  # strictly higher: a tie keeps the cheaper graph
            best, chosen = fitted, rows[-1]
    runner = max((r for r in rows if r is not chosen), key=lambda r: r["val"], default=None)
    record = {"select": select, "chosen": chosen["candidate"], "val": round(chosen["val"], 6),
              "runner_up": runner and runner["candidate"],
              "margin": runner and round(chosen["val"] - runner["val"], 6), "candidates": len(rows)}
    noise = val_noise(chosen["scores"], key)
    if noise is not None:
        record["val_noise"] = round(noise, 6)
    best.description = dataclasses.replace(best.description,
                                           calibration={**best.description.calibration, "auto": record})
    best.history["auto"] = {"select": select, "key": key, "split": "val", "candidates": rows}
    _print_comparison(rows, select, chosen)
    if noise is not None and runner and record["margin"] < noise:
        print(f"auto: the margin over {runner['candidate']} ({record['margin']:.4f}) is below val's standard "
              f"error ({noise:.4f}): another draw of val could choose differently; more val images per class "
              "make the choice surer")
    save_stage2(best)
    return 0


def _print_comparison(rows: list[dict], select: str, chosen: dict) -> None:
    print(f"auto: val {select} of {len(rows)} candidates (cheapest graph first)")
    for r in rows:
        mark = "  <- chosen" if r is chosen else ""
        print(f"auto:   {r['candidate']:<28} {r['val']:9.4f}{mark}")
