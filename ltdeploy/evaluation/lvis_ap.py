"""LVIS-style AP with faster-coco-eval (LVIS mode: federated negatives, r / c / f groups, 300 detections).
faster-coco-eval comes with the `eval` extra and is imported on first use."""
from __future__ import annotations

import copy
import logging

import numpy as np

from ltdeploy.datasets.det_sources import lvis_frequency
from ltdeploy.errors import LtDeployError

AP_KEYS = ("AP", "AP50", "AP75", "APr", "APc", "APf")
_FROM = {"AP": "AP_all", "AP50": "AP_50", "AP75": "AP_75", "APr": "APr", "APc": "APc", "APf": "APf"}
MAX_DETS = 300
SCORE_THRESHOLD = 1e-4


def _fce():
    try:
        import faster_coco_eval
    except ImportError:
        raise LtDeployError("LVIS AP needs faster-coco-eval: pip install 'ltdeploy[eval]'") from None
    return faster_coco_eval


def lvis_ap(gt, detections: list[dict], iou_type: str = "bbox", per_category: bool = False):
    """AP, AP50, AP75, APr, APc, APf in percent for COCO-results-format detections (300 per image at most,
    scores below 1e-4 dropped); a group without categories in the split reports -1. `gt`: a COCO object or
    a JSON path. With `per_category`, also {category id: AP in percent, None where the split has none}."""
    fce = _fce()
    gt = gt if isinstance(gt, fce.COCO) else fce.COCO(gt)
    dets = [d for d in detections if d["score"] >= SCORE_THRESHOLD]
    if not dets:
        scores = {k: 0.0 for k in AP_KEYS}
        return (scores, {c: 0.0 for c in gt.getCatIds()}) if per_category else scores
    dt = gt.loadRes(copy.deepcopy(dets))
    ev = fce.COCOeval_faster(gt, dt, iou_type, lvis_style=True, print_function=logging.getLogger(__name__).debug)
    ev.params.maxDets = [MAX_DETS]
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    stats = ev.stats_as_dict
    scores = {k: round(100 * float(stats[_FROM[k]]), 2) if stats[_FROM[k]] >= 0 else -1.0 for k in AP_KEYS}
    return (scores, _per_category(ev)) if per_category else scores


def _per_category(ev) -> dict[int, float | None]:
    """Each category's AP over IoU 0.5:0.95 (all areas, the last max-detections setting), from the accumulated
    precision array [T, R, K, A, M]; None for a category without ground truth in the split."""
    precision = np.asarray(ev.eval["precision"])
    out: dict[int, float | None] = {}
    for k, cid in enumerate(ev.params.catIds):
        v = precision[:, :, k, 0, -1]
        v = v[v > -1]
        out[int(cid)] = round(100 * float(v.mean()), 2) if v.size else None
    return out


def lvis_ground_truth(data: dict, train_image_counts: dict[int, int]):
    """The evaluator's ground truth from a split's JSON. LVIS files carry what LVIS mode reads; a COCO
    file gets each category's `frequency` from its training image count (category id → count) and, being
    labelled exhaustively, `neg_category_ids` = the categories absent from each image."""
    data = dict(data)
    data["categories"] = [c if "frequency" in c else
                          dict(c, frequency=lvis_frequency(train_image_counts.get(c["id"], 0)))
                          for c in data["categories"]]
    if any("neg_category_ids" not in im for im in data["images"]):
        present: dict[int, set[int]] = {im["id"]: set() for im in data["images"]}
        for a in data["annotations"]:
            present[a["image_id"]].add(a["category_id"])
        ids = [c["id"] for c in data["categories"]]
        data["images"] = [im if "neg_category_ids" in im else
                          dict(im, neg_category_ids=[c for c in ids if c not in present[im["id"]]],
                               not_exhaustive_category_ids=im.get("not_exhaustive_category_ids", []))
                          for im in data["images"]]
    return _fce().COCO(data)


def pairwise_bias(confusion: np.ndarray) -> float:
    """PwB(M) = ||M - M^T||_F (PCB's measure of asymmetric confusion; lower is better)."""
    m = np.asarray(confusion, np.float64)
    return float(np.linalg.norm(m - m.T))
