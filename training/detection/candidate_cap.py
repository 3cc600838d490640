"""The candidate cap before a detector's final NMS: the same in PyTorch, ONNX Runtime and TensorRT.

torchvision's RoIHeads sends every (proposal, class) pair scoring above 1e-4 into one class-offset NMS:
up to proposals x classes pairs (1.2 M for LVIS's 1203 classes). TensorRT cannot take that: its NMS layer
considers at most 5000 boxes per image (2000 on SM 5.3 / 6.2) and drops the rest silently, and its TopK
takes k <= 3840. So the graph caps the candidates itself, explicitly, and records the cap in the model
description; every runtime then runs the same suppression over the same candidates:

1. per class, the `per_class` best-scoring proposals (a frequent class's many duplicates of one object
   cannot crowd the rare classes out of the total below);
2. of those above the score threshold (and not degenerate), the `total` best-scoring pairs overall.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

# TensorRT's TopK takes k <= 3840 and its NMS layer at most 5000 boxes: 3840 keeps both exact.
TOTAL_CANDIDATES = 3840
PER_CLASS_CANDIDATES = 300  # as many as the 300 detections an image may keep


@dataclass(frozen=True)
class CandidateCap:
    """How many (box, class) candidates reach NMS per image; 0 turns a step off."""

    per_class: int = PER_CLASS_CANDIDATES
    total: int = TOTAL_CANDIDATES

    def to_dict(self) -> dict:
        """JSON-ready, for the model description."""
        return asdict(self)


def add_candidate_args(parser) -> None:
    """--candidates-per-class / --candidates on an argparse parser (None when not given: the caps'
    defaults, or a recipe's, fill them)."""
    parser.add_argument("--candidates-per-class", type=int, default=None,
                        help=f"per class, at most this many proposals reach NMS (0: no cap; "
                             f"default {PER_CLASS_CANDIDATES})")
    parser.add_argument("--candidates", type=int, default=None,
                        help=f"per image, at most this many (box, class) pairs reach NMS (0: no cap; default "
                             f"{TOTAL_CANDIDATES}, the largest TensorRT's TopK takes; 2000 for SM 5.3 / 6.2)")
