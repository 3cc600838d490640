"""Result objects returned by the predictor and printed by the CLI."""
from __future__ import annotations

import json
from dataclasses import dataclass, field


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
