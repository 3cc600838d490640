"""`train.py stage2 --method auto`: every candidate calibration of the task fitted on the same frozen stage 1,
each scored on the validation split (never test), the best kept. Candidates come cheapest graph first and a
later one must score strictly higher to win, so ties go to the cheaper graph. The checkpoint records the whole
comparison (history `auto`) and the choice (description `calibration.auto`, which `ltdeploy info` and
`evaluate.py` print)."""
from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING

from ltdeploy.calibrate.auto import candidate_label, candidate_row, choose, comparison_lines
from training.config import Stage2Config
from training.core.stage2 import fit_stage2, save_stage2

if TYPE_CHECKING:
    from training.core.task import Task


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
    best, rows = {}, []
    for method, overrides in task.auto_candidates(cfg):
        label = candidate_label(method, overrides)
        print(f"auto: {label}")
        fitted = fit_stage2(task, dataclasses.replace(cfg, method=method, **overrides))
        if isinstance(fitted, int):
            return fitted
        row = candidate_row(method, overrides, fitted.history.get("val") or {}, key, fitted.seconds)
        if row["val"] is None:
            print(f"error: {label} has no val score {key!r} (a val split is needed for --method auto)",
                  file=sys.stderr)
            return 2
        rows.append(row)
        if not best or row["val"] > best["row"]["val"]:  # only the leader's model is kept in memory
            best = {"row": row, "fitted": fitted}
    chosen, record = choose(rows, select, key)
    fitted = best["fitted"]
    fitted.description = dataclasses.replace(fitted.description,
                                             calibration={**fitted.description.calibration, "auto": record})
    fitted.history["auto"] = {"select": select, "key": key, "split": "val", "candidates": rows}
    print("\n".join(comparison_lines(rows, select, chosen, record)))
    save_stage2(fitted)
    return 0
