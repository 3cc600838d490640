"""Semantic segmentation on an engine: the K x K pixel confusion over a split at each label map's own size,
and mIoU / mAcc overall and over head / body / tail classes."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ltdeploy.datasets.seg_folders import IGNORE, SegSplit, is_seg_dataset, read_seg_split
from ltdeploy.errors import DatasetError
from ltdeploy.evaluation.batches import in_batches
from ltdeploy.evaluation.scores import Scores
from ltdeploy.evaluation.seg_scores import ConfusionAccumulator, segmentation_scores
from ltdeploy.image_io import read_image
from ltdeploy.metadata import ModelDescription
from ltdeploy.predictor import Predictor
from ltdeploy.preprocess import preprocess_image
from ltdeploy.segment import label_maps

LabelFn = Callable[[np.ndarray], np.ndarray]  # preprocessed batch (N, 3, H, W) → label maps (N, H, W)
COLUMNS = ("mIoU", "head_mIoU", "body_mIoU", "tail_mIoU", "mAcc", "head_mAcc", "body_mAcc", "tail_mAcc")
DEFAULT_SPLIT = "val"


def engine_labels(predictor: Predictor) -> LabelFn:
    """The engine's per-pixel argmax, as `ltdeploy predict` takes it."""
    desc = predictor.description
    return lambda x: label_maps(predictor.outputs(x), desc.output_names[0])


def seg_confusion(run: LabelFn, split: SegSplit, desc: ModelDescription, batch_size: int = 16,
                  progress: Callable[[int], None] | None = None) -> np.ndarray:
    """K x K pixel confusion (rows truth, columns prediction) of a model over a split; predictions are mapped
    back to each label map's size by the description's inverse transform."""
    acc = ConfusionAccumulator(desc.num_classes)

    def load(i: int) -> tuple[np.ndarray, np.ndarray]:
        rgb, lab = read_image(split.images[i]), split.read_labels(i)
        if lab.shape != rgb.shape[:2]:
            raise DatasetError(f"{split.labels[i]}: label map is {lab.shape[1]}x{lab.shape[0]}, its image "
                               f"{rgb.shape[1]}x{rgb.shape[0]}")
        return preprocess_image(rgb, desc.preprocess), lab
    for pairs in in_batches(list(range(len(split.images))), batch_size, load):
        pred = run(np.stack([x for x, _ in pairs]))
        for p, (_, lab) in zip(pred, pairs):
            labels = p.astype(np.uint8 if desc.num_classes <= 256 else np.uint16)
            acc.update(desc.preprocess.geometry(*lab.shape).labels_to_image(labels), lab)
        if progress is not None:
            progress(len(pairs))
    return acc.matrix


def evaluate(predictor: Predictor, data: str, split: str) -> Scores:
    """mIoU / mAcc of the engine on the split, overall and per group."""
    desc = predictor.description
    labelled = read_seg_split(data, split)
    if labelled.class_names != desc.class_names:
        raise ValueError(f"{data}: its {len(labelled.class_names)} class names differ from the model's "
                         f"{desc.num_classes}")
    matrix = seg_confusion(engine_labels(predictor), labelled, desc)
    s = segmentation_scores(matrix, desc.groups)
    return Scores(desc, split, len(labelled.images), {k: s[k] for k in COLUMNS}, s["per_class_iou"], "IoU",
                  dict({k: v for k, v in s.items() if k != "per_class_iou"}, confusion=matrix.tolist()))


def image_classes(data: str, split: str, num_classes: int) -> tuple[list[str], list[set[int]]]:
    """Image files of a split and the classes each label map shows (for class-balanced calibration)."""
    labelled = read_seg_split(data, split)
    shown = []
    for i in range(len(labelled.images)):
        lab = labelled.read_labels(i)
        shown.append({int(c) for c in np.unique(lab) if c != IGNORE})
    return labelled.images, shown


is_dataset = is_seg_dataset
