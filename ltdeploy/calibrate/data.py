"""The labelled data a calibration fits on: a classification dataset's train and val splits (either layout), and
the model's class order matched to the data's classes."""
from __future__ import annotations

import numpy as np

from ltdeploy.class_order import output_order, read_names
from ltdeploy.datasets.classification_sets import is_classification_dataset, read_split
from ltdeploy.datasets.lists import Split
from ltdeploy.errors import DatasetError
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

    The names come from --classes, else the model's own description, else they are the data's (sorted folder
    names, as torchvision's and Keras's folder readers number them); matched by name, a count or name mismatch
    is one line naming them."""
    if classes_file:
        names, source = read_names(classes_file), classes_file
    elif existing is not None:
        names, source = list(existing.class_names), "the model's description"
    else:
        names, source = None, "--classes FILE"
    order = output_order(data_names, num_classes, names, owner="the model's outputs", source=source)
    return names or list(data_names), np.asarray(order, np.int64)
