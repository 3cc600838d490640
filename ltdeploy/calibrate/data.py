"""The labelled data a calibration fits on: a classification dataset's train and val splits (either layout), and
the model's class order matched to the data's classes."""
from __future__ import annotations

import numpy as np

from ltdeploy.datasets.classification_sets import is_classification_dataset, read_split
from ltdeploy.datasets.lists import Split
from ltdeploy.errors import DatasetError, LtDeployError
from ltdeploy.metadata import ModelDescription


def classification_splits(data: str) -> tuple[Split, Split]:
    """(train, val) of a classification dataset folder; a one-line error for anything else."""
    if not is_classification_dataset(data):
        raise DatasetError(f"{data}: not a classification dataset (ImageNet-LT lists or train/ and val/ class "
                           "folders)")
    train = read_split(data, "train")
    return train, read_split(data, "val", num_classes=train.num_classes)


def class_order(data_names: list[str], num_classes: int, classes_file: str | None,
                existing: ModelDescription | None) -> tuple[list[str], np.ndarray]:
    """(the model's class names in output order, the map data label → model output index).

    The order comes from --classes, else the model's own description, else it is the data's (sorted folder
    names, as torchvision's and Keras's folder readers number them). Names are matched, so a data set listing
    its classes in another order still lines up; a count or name mismatch is one line naming them."""
    names = None
    if classes_file:
        try:
            with open(classes_file, encoding="utf-8") as f:
                names = [line.strip() for line in f if line.strip()]
        except OSError as exc:
            raise LtDeployError(f"--classes {classes_file}: {exc.strerror}") from None
    elif existing is not None:
        names = list(existing.class_names)
    if names is None:
        names = list(data_names)
    if len(names) != num_classes:
        source = f"--classes {classes_file} names" if classes_file else "the data has"
        raise LtDeployError(f"{source} {len(names)} classes but the model's classifier has {num_classes} outputs")
    if sorted(names) != sorted(data_names):
        missing = sorted(set(data_names) - set(names))[:5]
        extra = sorted(set(names) - set(data_names))[:5]
        raise LtDeployError(f"the model's class names and the data's differ (only in the data: {missing}; only in "
                            f"the model's: {extra})")
    index = {name: i for i, name in enumerate(names)}
    return names, np.asarray([index[n] for n in data_names], np.int64)
