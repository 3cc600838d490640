"""Result objects returned by the predictor: printed (`summary`, `to_dict`) and saved (`save`) by the CLI.

`save(out_dir, name)` writes what a person would look at (segmentation overlay and label PNGs, the drawn
detections) as `out_dir/name_*.png`; `name` defaults to the input's stem and may hold sub-folders.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from ltdeploy.drawing import draw_detections, overlay, write_png
from ltdeploy.masks import MaskPatch


def _prefix(path: str, out_dir: str, name: str | None) -> str:
    stem = name if name is not None else os.path.splitext(os.path.basename(path))[0]
    return os.path.join(out_dir, stem)


@dataclass(frozen=True)
class TopClass:
    """One ranked class: index, name, probability and frequency group (many / medium / few)."""

    index: int
    name: str
    prob: float
    group: str


@dataclass(frozen=True)
class Classification:
    """The classification of one image."""

    path: str
    top: list[TopClass] = field(default_factory=list)

    @property
    def label(self) -> TopClass:
        """The top-1 class."""
        return self.top[0]

    def summary(self, top: int | None = None) -> str:
        """One line: path, then each class with its probability (the first `top`, default all)."""
        ranked = ", ".join(f"{t.name} {t.prob:.3f}" for t in self.top[:top])
        return f"{self.path}: {ranked}"

    def save(self, out_dir: str, name: str | None = None) -> dict[str, str]:
        """A classification writes no image: nothing to save."""
        return {}

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {"path": self.path, "top": [{"index": t.index, "name": t.name, "prob": round(t.prob, 6),
                                            "group": t.group} for t in self.top]}

    def to_json(self) -> str:
        """JSON text of `to_dict`."""
        return json.dumps(self.to_dict())


@dataclass(frozen=True)
class Failure:
    """An input that could not be predicted, with the one-line reason."""

    path: str
    error: str

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {"path": self.path, "error": self.error}


@dataclass(frozen=True)
class ClassShare:
    """One class present in a segmentation: index, name, share of the image's pixels, frequency group."""

    index: int
    name: str
    share: float
    group: str


@dataclass(frozen=True)
class Segmentation:
    """The segmentation of one image: the label map at the image's own size and the files written."""

    path: str
    labels: np.ndarray = field(repr=False)
    classes: list[ClassShare] = field(default_factory=list)  # present classes, largest share first
    files: dict[str, str] = field(default_factory=dict)  # "overlay" / "labels" → written PNG
    image: np.ndarray | None = field(default=None, repr=False, compare=False)  # the RGB input, for the overlay
    colours: np.ndarray | None = field(default=None, repr=False, compare=False)  # (K, 3) class colours
    label_values: np.ndarray | None = field(default=None, repr=False, compare=False)  # class index → dataset id

    def save(self, out_dir: str, name: str | None = None) -> dict[str, str]:
        """Write NAME_overlay.png (the image under the class colours) and NAME_labels.png (the dataset's own
        label values, e.g. ADE20K's 1..150) at the image's size; returns and records the files."""
        stem = _prefix(self.path, out_dir, name)
        files = {"overlay": f"{stem}_overlay.png", "labels": f"{stem}_labels.png"}
        write_png(files["overlay"], overlay(self.image, self.labels, self.colours))
        write_png(files["labels"], self.label_values[self.labels])
        self.files.update(files)
        return files

    def summary(self, top: int = 5) -> str:
        """One line: path, size, the largest classes by pixel share, and the files written."""
        h, w = self.labels.shape
        shown = ", ".join(f"{c.name} {c.share:.2%}" for c in self.classes[:top])
        more = f" (+{len(self.classes) - top} more)" if len(self.classes) > top else ""
        files = f" → {', '.join(self.files.values())}" if self.files else ""
        return f"{self.path}: {w}x{h}, {shown}{more}{files}"

    def to_dict(self) -> dict:
        """JSON-ready dict: image size, per-class pixel shares of the classes present, files written."""
        h, w = self.labels.shape
        return {"path": self.path, "height": h, "width": w, "files": dict(self.files),
                "classes": [{"index": c.index, "name": c.name, "share": round(c.share, 6), "group": c.group}
                            for c in self.classes]}


@dataclass(frozen=True)
class DetectedObject:
    """One detection: class index (0-based), name, score, frequency group, box (x0, y0, x1, y1) in the
    image's pixels, for instance segmentation the mask as COCO run-length encoding, and the dataset's own
    category id (COCO's ids are sparse)."""

    index: int
    name: str
    score: float
    group: str
    box: tuple[float, float, float, float]
    rle: dict | None = None
    category_id: int | None = None


@dataclass(frozen=True)
class Detections:
    """The detections of one image, highest score first, and the files written."""

    path: str
    width: int
    height: int
    objects: list[DetectedObject] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # "image" → the drawn PNG
    image: np.ndarray | None = field(default=None, repr=False, compare=False)  # the RGB input, to draw on
    colours: np.ndarray | None = field(default=None, repr=False, compare=False)  # (K, 3) class colours
    masks: list[MaskPatch] | None = field(default=None, repr=False, compare=False)  # pasted, per object

    def save(self, out_dir: str, name: str | None = None) -> dict[str, str]:
        """Write NAME_det.png: the image with masks tinted, boxes and captions; returns and records the file."""
        files = {"image": f"{_prefix(self.path, out_dir, name)}_det.png"}
        boxes = np.asarray([o.box for o in self.objects], np.float32).reshape(-1, 4)
        captions = [f"{o.name} {o.score:.2f}" for o in self.objects]
        colours = self.colours[[o.index for o in self.objects]]
        write_png(files["image"], draw_detections(self.image, boxes, captions, colours, self.masks))
        self.files.update(files)
        return files

    def summary(self, top: int = 5) -> str:
        """One line: path, size, count, the best detections, and the file written."""
        shown = ", ".join(f"{o.name} {o.score:.2f}" for o in self.objects[:top])
        more = f" (+{len(self.objects) - top} more)" if len(self.objects) > top else ""
        files = f" → {', '.join(self.files.values())}" if self.files else ""
        return f"{self.path}: {self.width}x{self.height}, {len(self.objects)} detections: {shown}{more}{files}"

    def to_coco(self, image_id: int | str) -> list[dict]:
        """COCO results format (bbox x, y, w, h; the dataset's category ids, class index + 1 where unknown)."""
        out = []
        for o in self.objects:
            x0, y0, x1, y1 = o.box
            det = {"image_id": image_id, "category_id": o.index + 1 if o.category_id is None else o.category_id,
                   "bbox": [round(x0, 2), round(y0, 2),
                   round(x1 - x0, 2), round(y1 - y0, 2)], "score": round(o.score, 6)}
            if o.rle is not None:
                det["segmentation"] = o.rle
            out.append(det)
        return out

    def to_dict(self) -> dict:
        """JSON-ready dict: image size, files, and the detections in COCO results format plus names and groups."""
        stem = self.path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        image_id: int | str = int(stem) if stem.isdigit() else stem
        dets = [dict(d, category_name=o.name, group=o.group) for d, o in zip(self.to_coco(image_id), self.objects)]
        return {"path": self.path, "height": self.height, "width": self.width, "files": dict(self.files),
                "detections": dets}
