"""digits-lt / shapes-lt rewritten as an ImageFolder tree (`{train,val,test}/<class name>/<image>`), the layout
torchvision's ImageFolder, Ultralytics' classify datasets and Keras read; class order becomes the sorted
folder names."""
from __future__ import annotations

import os
import shutil

from ltdeploy.datasets.lists import is_list_dataset, read_split


def write_imagefolder_layout(src: str, root: str) -> None:
    """A list-format classification set at `src` as an ImageFolder tree at `root` (each image moved into its
    class's folder under its split)."""
    if not is_list_dataset(src):
        raise ValueError(f"{src}: the ImageFolder layout rewrites a list-format classification set")
    for split in ("train", "val", "test"):
        data = read_split(src, split)
        for path, label in zip(data.paths, data.labels):
            folder = os.path.join(root, split, data.class_names[int(label)])
            os.makedirs(folder, exist_ok=True)
            shutil.move(path, os.path.join(folder, os.path.basename(path)))
