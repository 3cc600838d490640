"""Result objects returned by the predictor and printed by the CLI."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np


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

    def summary(self) -> str:
        """One line: path, then each class with its probability."""
        ranked = ", ".join(f"{t.name} {t.prob:.3f}" for t in self.top)
        return f"{self.path}: {ranked}"

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
