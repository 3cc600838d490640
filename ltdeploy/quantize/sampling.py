"""Which images calibrate an INT8 model: drawn from a dataset split class-balanced (every class, rarest first,
gets its turn before any class gets a second image) or by instance (uniformly, as a loader would), or all
images of a plain folder.

Rare classes have few images, and activation ranges measured on an instance-drawn set rarely see them;
balanced drawing is the default for that reason.
"""
from __future__ import annotations

import numpy as np


def balanced_choice(image_classes: list[set[int]], class_counts: list[int], n: int,
                    rng: np.random.Generator) -> list[int]:
    """Indices of up to n images: classes take turns, rarest (by training count) first; each turn picks an
    unused image showing that class at random."""
    by_class: dict[int, list[int]] = {}
    for i, present in enumerate(image_classes):
        for c in present:
            by_class.setdefault(c, []).append(i)
    for members in by_class.values():
        rng.shuffle(members)
    order = sorted(by_class, key=lambda c: (class_counts[c] if c < len(class_counts) else 0, c))
    chosen: list[int] = []
    used: set[int] = set()
    while len(chosen) < n:
        progressed = False
        for c in order:
            members = by_class[c]
            while members and members[-1] in used:
                members.pop()
            if members and len(chosen) < n:
                used.add(members[-1])
                chosen.append(members.pop())
                progressed = True
        if not progressed:
            break
    return chosen


def instance_choice(count: int, n: int, rng: np.random.Generator) -> list[int]:
    """n images drawn uniformly without replacement (all of them when there are fewer)."""
    return sorted(rng.permutation(count)[:n].tolist())
