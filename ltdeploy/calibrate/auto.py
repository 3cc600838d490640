"""`--method auto`, the arithmetic both `train.py stage2` and `ltdeploy calibrate` run: the classification
candidates (cheapest graph first), each scored on the validation split, the strictly best kept (a tie keeps the
cheaper graph), and the record of the choice that goes into the model's description."""
from __future__ import annotations

import math

# The candidates, cheapest graph first: the first five fold into the plain linear head, NCM adds a
# normalisation, the DisAlign variants the confidence branch sigma(x); DisAlign itself at several rho.
AUTO_ORDER = ("logit-adjust", "tau-norm", "lws", "crt", "grw-classifier", "ncm", "disalign-margin",
              "disalign-magnitude")
AUTO_RHO = (0.8, 1.0, 1.2, 1.5, 2.0)
# the val record's score each `--select` reads
CLASSIFICATION_SELECT = {"top1": "top1", "few": "few", "medium": "medium", "many": "many"}
SEGMENTATION_SELECT = {"miou": "mIoU", "tail": "tail_mIoU"}
SEGMENTATION_RHO = (0.3, 0.6, 1.0)  # segmentation's candidates: DisAlign at each rho (pixel-count G-RW)


def classification_candidates() -> list[tuple[str, dict]]:
    """Every classification method in AUTO_ORDER, then DisAlign at each of AUTO_RHO: (method, settings)."""
    return [(m, {}) for m in AUTO_ORDER] + [("disalign", {"rho": r}) for r in AUTO_RHO]


def segmentation_candidates() -> list[tuple[str, dict]]:
    """DisAlign at each of SEGMENTATION_RHO."""
    return [("disalign", {"rho": r}) for r in SEGMENTATION_RHO]


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


def candidate_row(method: str, overrides: dict, val: dict, key: str, seconds: float) -> dict:
    """One candidate's line of the comparison (its selecting score under `val`); KeyError-free: a missing
    score is None, which the caller refuses."""
    return {"candidate": candidate_label(method, overrides), "method": method, **overrides,
            "val": val_score(val, key), "scores": flat_scores(val), "seconds": seconds}


def choose(rows: list[dict], select: str, key: str) -> tuple[dict, dict]:
    """(the chosen row, the description's record of the choice): the first strictly best val score wins."""
    chosen = None
    for row in rows:
        if chosen is None or row["val"] > chosen["val"]:  # strictly higher: a tie keeps the cheaper graph
            chosen = row
    runner = max((r for r in rows if r is not chosen), key=lambda r: r["val"], default=None)
    record = {"select": select, "chosen": chosen["candidate"], "val": round(chosen["val"], 6),
              "runner_up": runner and runner["candidate"],
              "margin": runner and round(chosen["val"] - runner["val"], 6), "candidates": len(rows)}
    noise = val_noise(chosen["scores"], key)
    if noise is not None:
        record["val_noise"] = round(noise, 6)
    return chosen, record


def comparison_lines(rows: list[dict], select: str, chosen: dict, record: dict) -> list[str]:
    """The printed comparison, and a warning when the margin is within val's noise."""
    lines = [f"auto: val {select} of {len(rows)} candidates (cheapest graph first)"]
    for r in rows:
        mark = "  <- chosen" if r is chosen else ""
        lines.append(f"auto:   {r['candidate']:<28} {r['val']:9.4f}{mark}")
    noise, runner = record.get("val_noise"), record["runner_up"]
    if noise is not None and runner and record["margin"] < noise:
        lines.append(f"auto: the margin over {runner} ({record['margin']:.4f}) is below val's standard error "
                     f"({noise:.4f}): another draw of val could choose differently; more val images per class make "
                     "the choice surer")
    return lines
