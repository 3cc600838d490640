"""Engines side by side: the per-group table with each engine's difference to the first, the per-class CSV,
and the JSON record."""
from __future__ import annotations

import csv

from ltdeploy.evaluation.scores import Scores
from ltdeploy.files import atomic_path


def _label(key: str) -> str:
    """Column header: 'head_mIoU' → 'head', 'mask_APr' → 'mskAPr'."""
    return key.replace("mask_", "msk") if key.startswith("mask_") else key.split("_")[0]


def _points(s: Scores, v: float | None) -> float | None:
    return None if v is None else (v if s.percent else 100 * v)


def _cell(v: float | None) -> str:
    return "     -" if v is None else f"{v:6.2f}"


def _delta_cell(v: float | None) -> str:
    return "     -" if v is None else f"{v:+6.2f}"


def delta(base: Scores, other: Scores) -> dict[str, float | None]:
    """Column by column, other minus base, in points."""
    out = {}
    for k in base.columns:
        a, b = _points(base, base.columns[k]), _points(other, other.columns.get(k))
        out[k] = None if a is None or b is None else round(b - a, 2)
    return out


def table(runs: list[tuple[str, Scores]]) -> str:
    """The table: one row per engine (in percent), and a delta row under every engine after the first."""
    base = runs[0][1]
    width = max(28, *(len(name) + 2 for name, _ in runs))
    lines = [f"{'engine':<{width}}" + " ".join(f"{_label(k):>6}" for k in base.columns)]
    for i, (name, s) in enumerate(runs):
        lines.append(f"{name:<{width}}" + " ".join(_cell(_points(s, s.columns[k])) for k in base.columns))
        if i:
            d = delta(base, s)
            lines.append(f"{'  vs ' + runs[0][0]:<{width}}" + " ".join(_delta_cell(d[k]) for k in base.columns))
    return "\n".join(lines)


def write_csv(path: str, runs: list[tuple[str, Scores]]) -> None:
    """One row per class: id, name, training count, group, each engine's value and its difference to the first."""
    base = runs[0][1]
    desc = base.description
    metric = base.per_class_metric
    head = ["class", "class_id", "name", "train_count", "group"] + [f"{metric} {n}" for n, _ in runs] + \
        [f"delta {n}" for n, _ in runs[1:]]
    with atomic_path(path, suffix=".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(head)
        for c, (cid, name, n, g) in enumerate(zip(desc.class_ids, desc.class_names, desc.class_counts, desc.groups)):
            vals = [_points(s, s.per_class[c]) for _, s in runs]
            deltas = [None if v is None or vals[0] is None else v - vals[0] for v in vals[1:]]
            w.writerow([c, cid, name, n, g] + ["" if v is None else f"{v:.4f}" for v in vals + deltas])


def record(data: str, runs: list[tuple[str, Scores]]) -> dict:
    """What --json writes."""
    base = runs[0][1]
    return {"data": data, "split": base.split, "task": base.description.task, "images": base.images,
            "class_names": base.description.class_names, "class_counts": base.description.class_counts,
            "engines": [{"engine": name, "precision": s.description.precision or {"weights": "fp32"},
                         "calibration": s.description.calibration, "columns": s.columns,
                         "delta_to_first": delta(base, s) if i else None, "per_class": s.per_class,
                         "per_class_metric": s.per_class_metric, "details": s.details}
                        for i, (name, s) in enumerate(runs)]}
