"""One engine's scores on one split, in the form every task reports them."""
from __future__ import annotations

from dataclasses import dataclass, field

from ltdeploy.metadata import ModelDescription


@dataclass
class Scores:
    """Headline columns (overall first, then the three frequency groups, ...), one value per class and the
    full result (what `--json` writes)."""

    description: ModelDescription
    split: str
    images: int
    columns: dict[str, float | None]  # fractions (classification, segmentation) or AP in percent (detection)
    per_class: list[float | None]
    per_class_metric: str  # "top-1", "IoU", "box AP"
    details: dict = field(default_factory=dict)
    percent: bool = False  # columns are already in percent
