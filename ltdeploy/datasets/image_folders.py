"""The ImageFolder layout: `root/{train,val,test}/<class>/<image>`, as torchvision's `ImageFolder`, Ultralytics'
classify datasets and Keras' `image_dataset_from_directory` read it.

Class names are train's folder names, sorted (torchvision's rule); a val or test folder may lack a class but
never add one. Images may sit in subfolders of a class folder. Hidden files (`.DS_Store`) are skipped; any
other file that is not an image is an error naming it, so a stray file never passes silently.
"""
from __future__ import annotations

import os

import numpy as np

from ltdeploy.datasets.lists import Split
from ltdeploy.errors import DatasetError
from ltdeploy.image_io import IMAGE_SUFFIXES

SPLITS = ("train", "val", "test")
IGNORED_FILES = ("thumbs.db", "desktop.ini")


def _subfolders(folder: str) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def is_image_folder_dataset(root: str | None) -> bool:
    """True for a folder whose `train/` holds class folders."""
    if not root or not os.path.isdir(os.path.join(root, "train")):
        return False
    return bool(_subfolders(os.path.join(root, "train")))


def _images_in(folder: str, root: str) -> list[str]:
    found = []
    for here, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or name.lower() in IGNORED_FILES:
                continue
            path = os.path.join(here, name)
            if not name.lower().endswith(IMAGE_SUFFIXES):
                raise DatasetError(f"{os.path.relpath(path, root)}: not an image (supported: "
                                   f"{', '.join(IMAGE_SUFFIXES)}); move it out of the dataset")
            found.append(path)
    return found


def folder_class_names(root: str) -> list[str]:
    """The class names: train's class folders, sorted."""
    train = os.path.join(root, "train")
    if not os.path.isdir(train):
        raise DatasetError(f"{root}: no train/ folder (ImageFolder layout: train/<class>/<image>)")
    names = _subfolders(train)
    if not names:
        raise DatasetError(f"{train}: no class folders (ImageFolder layout: train/<class>/<image>)")
    return names


def read_folder_split(root: str, split: str) -> Split:
    """One split of an ImageFolder tree, labelled by train's class order (DatasetError naming what is wrong)."""
    names = folder_class_names(root)
    folder = os.path.join(root, split)
    if not os.path.isdir(folder):
        raise DatasetError(f"{root}: no {split}/ folder (ImageFolder layout: {split}/<class>/<image>)")
    loose = [e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")
             and e.name.lower() not in IGNORED_FILES]
    if loose:
        raise DatasetError(f"{split}/{sorted(loose)[0]}: a file outside any class folder "
                           f"(ImageFolder layout: {split}/<class>/<image>)")
    present = _subfolders(folder)
    extra = [c for c in present if c not in set(names)]
    if extra:
        raise DatasetError(f"{split}/ has {len(extra)} class folder(s) that train/ lacks: {', '.join(extra[:5])}")
    index = {c: i for i, c in enumerate(names)}
    paths: list[str] = []
    labels: list[int] = []
    for name in present:
        images = _images_in(os.path.join(folder, name), root)
        if not images:
            raise DatasetError(f"{split}/{name}: a class folder with no images")
        paths.extend(images)
        labels.extend([index[name]] * len(images))
    if not paths:
        raise DatasetError(f"{folder}: no class folders with images")
    return Split(paths, np.asarray(labels, dtype=np.int64), names)
