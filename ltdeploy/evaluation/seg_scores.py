"""Segmentation metrics (docs/method.md §7): mIoU and mean accuracy, overall and over head / body / tail
classes by training pixel share (ADE20K: > 1%, 0.1-1%, < 0.1%)."""
from __future__ import annotations

import numpy as np

from ltdeploy.datasets.seg_folders import IGNORE
from ltdeploy.metadata import NEUTRAL_GROUPS, frequency_group, share_thresholds
from ltdeploy.tasks import task_spec

SHARE_THRESHOLDS = (0.01, 0.001)  # head above, tail below


class ConfusionAccumulator:
    """K x K pixel confusion (rows: truth, columns: prediction), ignore pixels skipped."""

    def __init__(self, num_classes: int) -> None:
        self.k = num_classes
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def update(self, pred: np.ndarray, label: np.ndarray) -> None:
        """Add one (or a batch of) predicted and true label maps of the same shape."""
        valid = label != IGNORE
        idx = label[valid].astype(np.int64) * self.k + pred[valid].astype(np.int64)
        self.matrix += np.bincount(idx, minlength=self.k * self.k).reshape(self.k, self.k)


def share_groups(pixel_counts: list[int], thresholds: tuple[float, float] = SHARE_THRESHOLDS) -> list[str]:
    """'head', 'body' or 'tail' for each class by its share of training pixels."""
    above, below = share_thresholds(pixel_counts, *thresholds)
    names = dict(zip(NEUTRAL_GROUPS, task_spec("segmentation").group_names))
    return [names[frequency_group(n, above, below)] for n in pixel_counts]


def segmentation_scores(matrix: np.ndarray, groups: list[str]) -> dict:
    """mIoU and mAcc overall and per group; classes absent from the evaluated truth are left out."""
    tp = np.diag(matrix).astype(np.float64)
    truth, predicted = matrix.sum(1), matrix.sum(0)
    present = truth > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (truth + predicted - tp)
        acc = tp / truth
    out = {"mIoU": float(np.nanmean(iou[present])), "mAcc": float(np.nanmean(acc[present])),
           "pixel_acc": float(tp.sum() / max(truth.sum(), 1))}
    g = np.asarray(groups)
    for name in ("head", "body", "tail"):
        sel = present & (g == name)
        out[f"{name}_mIoU"] = float(iou[sel].mean()) if sel.any() else None
        out[f"{name}_mAcc"] = float(acc[sel].mean()) if sel.any() else None
        out[f"{name}_classes"] = int((g == name).sum())
    out["per_class_iou"] = [None if not p else float(v) for p, v in zip(present, iou)]
    return out
