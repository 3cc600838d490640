"""Detection datasets as users download them: where the JSON files and the images are, and the checks that
turn a broken download into one clear line.

Layouts found from a folder (or given as explicit files with `--train-ann/--val-ann/--images`):
- LVIS v1: `lvis_v1_train.json`, `lvis_v1_val.json` (in the folder or its `annotations/`) beside COCO's
  `train2017/` and `val2017/`; an image's file is the last two parts of its `coco_url` (LVIS val draws from
  both COCO folders).
- COCO: `annotations/instances_{train,val}2017.json` beside `train2017/`, `val2017/` (`file_name`).
- ltdeploy's own (det-lt): `annotations/{train,val}.json` beside `images/{train,val}/` (`file_name`).
Category ids are kept as the file has them (COCO's are sparse); classes are numbered in id order.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from ltdeploy.errors import DatasetError

SPLITS = ("train", "val")
LAYOUTS = {  # name → (annotation file per split, relative to the folder; image folder per split)
    "lvis": ({"train": "lvis_v1_train.json", "val": "lvis_v1_val.json"}, {"train": "", "val": ""}),
    "coco": ({"train": "annotations/instances_train2017.json", "val": "annotations/instances_val2017.json"},
             {"train": "train2017", "val": "val2017"}),
    "ltdeploy": ({"train": "annotations/train.json", "val": "annotations/val.json"},
                 {"train": "images/train", "val": "images/val"}),
}


def lvis_frequency(image_count: int) -> str:
    """LVIS's frequency group of a category from its number of training images: r 1-10, c 11-100, f > 100."""
    return "r" if image_count <= 10 else "c" if image_count <= 100 else "f"


@dataclass(frozen=True)
class DetSource:
    """One detection dataset: its layout name, the JSON file of each split, and the folder its images'
    paths are relative to (per split)."""

    layout: str
    annotations: dict[str, str]
    images: dict[str, str]

    def to_dict(self) -> dict:
        """JSON-ready (recorded in a model's provenance, so export and evaluation find the data again)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DetSource":
        """Inverse of `to_dict`."""
        return cls(str(data["layout"]), dict(data["annotations"]), dict(data["images"]))

    def annotation_file(self, split: str) -> str:
        """The JSON file of a split; DatasetError when the dataset has none."""
        if split not in self.annotations:
            raise DatasetError(f"this {self.layout} dataset has no {split} split (it has "
                               f"{', '.join(self.annotations)})")
        return self.annotations[split]

    def load(self, split: str) -> dict:
        """The split's JSON, checked: categories, images and annotations present and consistent."""
        return read_detection_json(self.annotation_file(split))

    def image_paths(self, split: str) -> list[str]:
        """Every image file of a split, in image-id order."""
        return [self.image_path(split, im) for im in sorted(self.load(split)["images"], key=lambda im: im["id"])]

    def image_path(self, split: str, image: dict) -> str:
        """Where an image entry's file is: `file_name` under the split's image folder, else (LVIS) the last
        two parts of `coco_url` under the folder above it."""
        folder = self.images[split]
        if image.get("file_name"):
            return os.path.join(folder, image["file_name"])
        url = image.get("coco_url") or image.get("flickr_url")
        if not url:
            raise DatasetError(f"{self.annotations[split]}: image {image.get('id')} has neither file_name nor coco_url")
        parts = url.replace("\\", "/").rstrip("/").split("/")
        return os.path.join(folder, *parts[-2:])


def _layout_of(root: str) -> tuple[str, dict[str, str]] | None:
    for name, (files, _) in LAYOUTS.items():
        for base in (root, os.path.join(root, "annotations")) if name == "lvis" else (root,):
            found = {s: os.path.join(base, f) for s, f in files.items() if os.path.isfile(os.path.join(base, f))}
            if "train" in found or "val" in found:
                return name, found
    return None


def is_det_dataset(root: str | None) -> bool:
    """True for a folder in one of the detection layouts."""
    return bool(root) and os.path.isdir(root) and _layout_of(root) is not None


def resolve_det_source(data: str | None = None, train_ann: str | None = None, val_ann: str | None = None,
                       images: str | None = None) -> DetSource:
    """The dataset in folder `data`, or the explicit JSON files with their image folder (COCO / LVIS images
    beside each other: `train2017/`, `val2017/`)."""
    if train_ann or val_ann:
        if not images:
            raise DatasetError("--train-ann / --val-ann need --images (the folder holding train2017/ and val2017/)")
        anns = {s: os.path.abspath(a) for s, a in (("train", train_ann), ("val", val_ann)) if a}
        for a in anns.values():
            if not os.path.isfile(a):
                raise DatasetError(f"{a}: no such annotation file")
        return DetSource("files", anns, {s: _image_folder(os.path.abspath(images), a) for s, a in anns.items()})
    if not data or not os.path.isdir(data):
        raise DatasetError(f"{data}: no such dataset folder")
    found = _layout_of(data)
    if found is None:
        raise DatasetError(f"{data}: no detection annotations found (lvis_v1_train.json, "
                           "annotations/instances_train2017.json or annotations/train.json)")
    layout, anns = found
    root = os.path.abspath(data)
    folders = LAYOUTS[layout][1]
    return DetSource(layout, {s: os.path.abspath(a) for s, a in anns.items()},
                     {s: os.path.join(root, folders[s]) if folders[s] else root for s in anns})


def _image_folder(images: str, annotation: str) -> str:
    """For explicit files: COCO's `instances_val2017.json` names its image folder (`images/val2017/`);
    LVIS paths carry it already (coco_url), so the folder itself."""
    stem = os.path.splitext(os.path.basename(annotation))[0]
    name = stem.split("_", 1)[1] if stem.startswith("instances_") else ""
    return os.path.join(images, name) if name and os.path.isdir(os.path.join(images, name)) else images


def read_detection_json(path: str) -> dict:
    """Load an LVIS / COCO instances JSON and check what training and evaluation rely on."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: no such annotation file")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object with images, annotations and categories")
    for key in ("categories", "images", "annotations"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: no '{key}' list; a detection JSON (LVIS / COCO instances format) needs "
                               "images, annotations and categories")
    if not data["categories"]:
        raise DatasetError(f"{path}: 'categories' is empty")
    cats = {c.get("id") for c in data["categories"]}
    if None in cats or len(cats) != len(data["categories"]):
        raise DatasetError(f"{path}: every category needs a unique id")
    images = {im.get("id") for im in data["images"]}
    for a in data["annotations"]:
        if a.get("category_id") not in cats:
            raise DatasetError(f"{path}: annotation {a.get('id')} has category_id {a.get('category_id')}, which is "
                               "not among the categories")
        if a.get("image_id") not in images:
            raise DatasetError(f"{path}: annotation {a.get('id')} refers to image {a.get('image_id')}, which is "
                               "not among the images")
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4):
            raise DatasetError(f"{path}: annotation {a.get('id')} has no [x, y, width, height] bbox")
    return data
