"""What differs between calibrating a classifier and a segmenter: the data, the class counts and groups, how a
split's features are cached, auto's candidates and scores, and what the description adds."""
from __future__ import annotations

import numpy as np

from ltdeploy.calibrate.auto import (
    CLASSIFICATION_SELECT,
    SEGMENTATION_SELECT,
    classification_candidates,
    segmentation_candidates,
)
from ltdeploy.calibrate.settings import METHODS
from ltdeploy.errors import DatasetError, LtDeployError
from ltdeploy.metadata import ModelDescription, default_group_thresholds, share_thresholds


class ClassificationJob:
    """A classifier: images with one label each; many / medium / few by training images."""

    task = "classification"
    select = CLASSIFICATION_SELECT
    methods = ("auto", "none", *METHODS)
    default_rho = 1.2
    probabilities = True  # a Softmax output is the class probabilities (predict ranks them as they are)

    def __init__(self, data: str, num_classes: int, classes: str | None, existing: ModelDescription | None) -> None:
        from ltdeploy.calibrate.data import class_order, classification_splits

        self.train, self.val = classification_splits(data)
        self.names, self.to_model = class_order(self.train.class_names, num_classes, classes, existing)
        self.counts = np.bincount(self.to_model[self.train.labels], minlength=len(self.names)).tolist()
        self.thresholds = default_group_thresholds(self.counts)
        self.class_ids: list[int] = []

    @staticmethod
    def default_fit_batch(pixels: int) -> int:
        """train.py stage2's batch: 64 images."""
        return 64

    def candidates(self) -> list[tuple[str, dict]]:
        """auto's candidates (train.py stage2 --method auto's)."""
        return classification_candidates()

    def cache(self, session, head, pre, split: str, settings, batch: int, per_image: int):
        """A split's features, logits and labels."""
        from ltdeploy.calibrate.cache import cache_split

        s = self.train if split == "train" else self.val
        return cache_split(session, head, s.paths, self.to_model[s.labels], pre, batch, f"{split} features",
                           skip_bad=split == "train")

    def val_record(self, cal, val) -> dict:
        """Long-tail top-1 on val (overall, many, medium, few): the keys train.py's val records have."""
        from ltdeploy.evaluation.accuracy import long_tail_accuracy

        return long_tail_accuracy(val.logits(cal).argmax(1), val.y, self.counts, self.thresholds)

    def val_paths(self) -> list[str]:
        """The val images, in order."""
        return list(self.val.paths)

    @staticmethod
    def table(rows: list[tuple[str, dict]]) -> list[str]:
        """Val top-1, overall and per group, in %."""
        from ltdeploy.evaluation.accuracy import ACCURACY_HEADER, format_accuracy

        return [f"val: {ACCURACY_HEADER}", *(f"val: {format_accuracy(name, r)}" for name, r in rows)]


class SegmentationJob:
    """A segmenter: label maps; head / body / tail by training pixel share; pixels sampled per image."""

    task = "segmentation"
    select = SEGMENTATION_SELECT
    methods = ("auto", "none", "disalign", "disalign-magnitude", "disalign-margin")
    default_rho = 0.3
    probabilities = False  # label maps are the argmax either way

    def __init__(self, data: str, num_classes: int, classes: str | None, existing: ModelDescription | None) -> None:
        from ltdeploy.calibrate.data import class_order
        from ltdeploy.datasets.seg_folders import is_seg_dataset, pixel_counts, read_seg_split

        if not is_seg_dataset(data):
            raise DatasetError(f"{data}: not a segmentation dataset (images/ and annotations/ with train and val "
                               "splits)")
        self.train, self.val = read_seg_split(data, "train"), read_seg_split(data, "val")
        self.names, self.to_model = class_order(self.train.class_names, num_classes, classes, existing)
        counts = np.zeros(len(self.names), np.int64)
        counts[self.to_model] = pixel_counts(self.train)
        self.counts = counts.tolist()
        self.thresholds = share_thresholds(self.counts)
        ids = np.zeros(len(self.names), np.int64)
        ids[self.to_model] = self.train.class_ids or range(len(self.names))
        self.class_ids = ids.tolist()

    @staticmethod
    def default_fit_batch(pixels: int) -> int:
        """16 images' sampled pixels: the images a step of the demo's and the ADE20K recipe's (8 GPUs x 2)
        segmentation stage 2; smaller, noisier batches fit the tail less well."""
        return 16 * pixels

    def candidates(self) -> list[tuple[str, dict]]:
        """auto's candidates: DisAlign at each of segmentation's rho values."""
        return segmentation_candidates()

    def cache(self, session, head, pre, split: str, settings, batch: int, per_image: int):
        """A split's sampled pixels: features, logits and labels."""
        from ltdeploy.calibrate.cache import cache_pixels

        if pre.resize != "stretch":
            raise LtDeployError("a segmenter's preprocessing resizes straight to the input size: --resize-short 0")
        s = self.train if split == "train" else self.val
        per_image = pixels_within_budget(per_image, len(s.images), head.feature_dim + head.num_classes, split)
        return cache_pixels(session, head, s, pre, self.to_model, per_image, settings.seed + (split == "val"),
                            f"{split} pixels", skip_bad=split == "train")

    def val_record(self, cal, val) -> dict:
        """mIoU (and head / body / tail mIoU) over val's sampled pixels."""
        from ltdeploy.evaluation.seg_scores import ConfusionAccumulator, segmentation_scores, share_groups

        acc = ConfusionAccumulator(len(self.names))
        acc.update(val.logits(cal).argmax(1), val.y)
        return segmentation_scores(acc.matrix, share_groups(self.counts))

    def val_paths(self) -> list[str]:
        """The val images, in order."""
        return list(self.val.images)

    @staticmethod
    def table(rows: list[tuple[str, dict]]) -> list[str]:
        """Val mIoU, overall and per group, over the sampled pixels, in %."""
        def pct(v: float | None) -> str:
            return "     -" if v is None else f"{100 * v:6.2f}"
        lines = [f"val (sampled pixels): {'model':<20} {'mIoU':>6} {'head':>6} {'body':>6} {'tail':>6}"]
        return lines + [f"val (sampled pixels): {name:<20} {pct(r['mIoU'])} {pct(r['head_mIoU'])} "
                        f"{pct(r['body_mIoU'])} {pct(r['tail_mIoU'])}" for name, r in rows]


CACHE_BUDGET_BYTES = 4 << 30  # a split's cached cells, as train.py keeps a segmenter's features in memory


def pixels_within_budget(per_image: int, images: int, values_per_cell: int, split: str) -> int:
    """`per_image`, or fewer so that a split's cached cells (at most four a pixel, float32 features and logits)
    stay within CACHE_BUDGET_BYTES; says so on stderr when it lowers it."""
    fits = CACHE_BUDGET_BYTES // max(1, images * 4 * values_per_cell * 4)
    if fits >= per_image:
        return per_image
    if fits < 1:
        raise LtDeployError(f"{images} {split} images' features do not fit the cache's "
                            f"{CACHE_BUDGET_BYTES >> 30} GiB at one pixel an image; calibrate on a subset")
    import click

    click.echo(f"{split}: {fits} labelled pixels an image, not {per_image}, so that {images} images' cached "
               f"features stay within {CACHE_BUDGET_BYTES >> 30} GiB", err=True)
    return fits


JOBS = {job.task: job for job in (ClassificationJob, SegmentationJob)}


def job_for(task: str, data: str, num_classes: int, classes: str | None, existing: ModelDescription | None):
    """The job of the head's task."""
    return JOBS[task](data, num_classes, classes, existing)
