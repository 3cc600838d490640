"""Classification on an engine: top-1 overall (mean of per-class accuracies), many / medium / few, per class,
on a split in the ImageNet-LT list format or an ImageFolder tree."""
from __future__ import annotations

import numpy as np

from ltdeploy.datasets.classification_sets import is_classification_dataset, read_split
from ltdeploy.evaluation.accuracy import long_tail_accuracy
from ltdeploy.evaluation.batches import in_batches, model_input
from ltdeploy.evaluation.scores import Scores
from ltdeploy.predictor import Predictor

COLUMNS = ("top1", "many", "medium", "few")
DEFAULT_SPLIT = "test"


def engine_logits(predictor: Predictor, paths: list[str], batch_size: int = 64) -> np.ndarray:
    """Calibrated logits (N, K) of the engine for image files, preprocessed as the runtime does."""
    pre = predictor.description.preprocess
    outs = [predictor.logits(np.stack(xs)) for xs in in_batches(paths, batch_size, lambda p: model_input(p, pre))]
    return np.concatenate(outs) if outs else np.zeros((0, predictor.description.num_classes), np.float32)


def evaluate(predictor: Predictor, data: str, split: str) -> Scores:
    """Long-tail top-1 of the engine on the split."""
    desc = predictor.description
    labelled = read_split(data, split, num_classes=desc.num_classes)
    check_names(labelled.class_names[:desc.num_classes], desc.class_names, data)
    pred = engine_logits(predictor, labelled.paths).argmax(1)
    acc = long_tail_accuracy(pred, labelled.labels, desc.class_counts, tuple(desc.group_thresholds))
    return Scores(desc, split, len(labelled.paths), {k: acc[k] for k in COLUMNS}, acc["per_class"], "top-1",
                  {k: v for k, v in acc.items() if k != "per_class"})


def check_names(found: list[str], expected: list[str], data: str) -> None:
    """Class names must match where the dataset names its classes (a list without classes.txt does not)."""
    if found != expected and not all(n.startswith("class_") for n in found):
        raise ValueError(f"{data}: its class names differ from the model's ({found[0]!r} vs {expected[0]!r})")


def image_classes(data: str, split: str, num_classes: int) -> tuple[list[str], list[set[int]]]:
    """Image files of a split and the class each shows (for class-balanced calibration)."""
    labelled = read_split(data, split, num_classes=num_classes)
    return labelled.paths, [{int(y)} for y in labelled.labels]


is_dataset = is_classification_dataset
