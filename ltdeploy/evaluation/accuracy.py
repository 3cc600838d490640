"""Long-tail accuracy: top-1 overall and per frequency group, per-class accuracy."""
from __future__ import annotations

import numpy as np

from ltdeploy.metadata import frequency_group


def long_tail_accuracy(pred: np.ndarray, labels: np.ndarray, train_counts: list[int],
                       thresholds: tuple[int, int]) -> dict:
    """Overall (mean of per-class accuracies on the balanced split) and many / medium / few top-1."""
    k = len(train_counts)
    per_class = np.full(k, np.nan)
    for c in range(k):
        m = labels == c
        if m.any():
            per_class[c] = float((pred[m] == c).mean())
    groups = np.array([frequency_group(n, *thresholds) for n in train_counts])
    out = {"top1": float(np.nanmean(per_class)), "top1_samples": float((pred == labels).mean()),
           "samples": len(labels),
           "thresholds": {"many_above": thresholds[0], "few_below": thresholds[1]}}
    for g in ("many", "medium", "few"):
        sel = per_class[groups == g]
        sel = sel[~np.isnan(sel)]
        out[g] = float(sel.mean()) if sel.size else None
        out[f"{g}_classes"] = int((groups == g).sum())
    out["per_class"] = [None if np.isnan(a) else float(a) for a in per_class]
    return out


def format_accuracy(name: str, acc: dict) -> str:
    """One table row: name, overall, many, medium, few (in %)."""
    def pct(v: float | None) -> str:
        return "   -  " if v is None else f"{100 * v:6.2f}"
    return f"{name:<28} {pct(acc['top1'])} {pct(acc['many'])} {pct(acc['medium'])} {pct(acc['few'])}"


ACCURACY_HEADER = f"{'model':<28} {'top1':>6} {'many':>6} {'medium':>6} {'few':>6}"
