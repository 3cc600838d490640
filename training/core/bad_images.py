"""Long runs meet unreadable images (truncated downloads, a file deleted mid-run): the training loaders give a
`BadImage` in the sample's place, batches are collated from the good samples, and the engine counts and reports
them once instead of dying hours in. Evaluation does not skip: a score over fewer images would mislead."""
from __future__ import annotations

import sys
from dataclasses import dataclass

from torch.utils.data import default_collate


@dataclass(frozen=True)
class BadImage:
    """A sample that could not be read: which file, and why."""

    path: str
    reason: str


def collate_good(batch: list) -> tuple:
    """(inputs, targets, bad samples) of a batch; inputs and targets are None when every sample was bad."""
    good = [b for b in batch if not isinstance(b, BadImage)]
    bad = [b for b in batch if isinstance(b, BadImage)]
    x, y = default_collate(good) if good else (None, None)
    return x, y, bad


class BadImageLog:
    """How many bad images a run skipped; the first is reported on stderr, the count goes in the history."""

    def __init__(self, already: int = 0) -> None:
        self.count = already

    def add(self, bad: list[BadImage]) -> None:
        """Count a batch's bad samples (the run's first is named)."""
        if bad and self.count == 0:
            print(f"warning: skipping unreadable images, first {bad[0].path}: {bad[0].reason} (the count goes in "
                  "the checkpoint's history)", file=sys.stderr)
        self.count += len(bad)
