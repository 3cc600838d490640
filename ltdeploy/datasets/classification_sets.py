"""Classification datasets in either layout they come in: ImageNet-LT lists (`train.txt`, ...) or an ImageFolder
tree (`train/<class>/<image>`). Lists win where a folder has both (ImageNet-LT's own images sit in class folders
under `train/`, but its lists, not the folders, say which images belong to the long-tailed split)."""
from __future__ import annotations

import hashlib
import os

from ltdeploy.datasets import lists
from ltdeploy.datasets.image_folders import is_image_folder_dataset, read_folder_split
from ltdeploy.datasets.lists import Split
from ltdeploy.errors import DatasetError


def is_classification_dataset(root: str | None) -> bool:
    """True for a folder in either layout."""
    return lists.is_list_dataset(root) or is_image_folder_dataset(root)


def layout(root: str | None) -> str:
    """'lists' or 'imagefolder' (DatasetError for neither)."""
    if lists.is_list_dataset(root):
        return "lists"
    if is_image_folder_dataset(root):
        return "imagefolder"
    if not root or not os.path.isdir(root):
        raise DatasetError(f"{root}: no such dataset folder")
    raise DatasetError(f"{root}: not a classification dataset: expected ImageNet-LT lists (train.txt, val.txt, "
                       "classes.txt) or an ImageFolder tree (train/<class>/<image>, val/<class>/<image>)")


def read_split(root: str, split: str, num_classes: int | None = None) -> Split:
    """One split, in whichever layout `root` has; `num_classes` (the model's) must match the dataset's."""
    if layout(root) == "lists":
        try:
            return lists.read_split(root, split, num_classes=num_classes)
        except FileNotFoundError as exc:
            raise DatasetError(str(exc)) from None
    data = read_folder_split(root, split)
    if num_classes is not None and data.num_classes != num_classes:
        raise DatasetError(f"{root}: the dataset has {data.num_classes} classes (folders in train/) but the model "
                           f"has {num_classes}; give data with the model's classes")
    return data


def split_fingerprint(root: str, split: str) -> bytes:
    """Bytes that change whenever the split's images or labels do (keys feature caches)."""
    if layout(root) == "lists":
        with open(lists.find_list(root, split), "rb") as f:
            return f.read()
    data = read_folder_split(root, split)
    text = "\n".join(f"{os.path.relpath(p, root)} {y}" for p, y in zip(data.paths, data.labels))
    return hashlib.sha256(text.encode()).digest()
