"""Long runs meet unreadable images (truncated downloads, a file deleted mid-run): the training loaders give a
`BadImage` in the sample's place, batches are collated from the good samples, and the engine counts and reports
them once instead of dying hours in. Evaluation does not skip: a score over fewer images would mislead."""
from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm import tqdm


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
            tqdm.write(f"warning: skipping unreadable images, first {bad[0].path}: {bad[0].reason} (the count goes "
                       "in the checkpoint's history)", file=sys.stderr)  # on its own line, under any progress bar
        self.count += len(bad)


def streaming_loader(dataset: Dataset, batch_size: int, workers: int, seed: int) -> DataLoader:
    """A shuffled training loader over a dataset that decodes (and augments) in its worker processes and gives
    BadImage for what it cannot read. Its first sample is made here, so that a misconfigured pipeline fails in
    one line rather than inside a worker."""
    dataset[0]
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed),
                      num_workers=workers, collate_fn=collate_good, persistent_workers=workers > 0)
