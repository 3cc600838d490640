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

import torch
from torchvision.models.detection._utils import _topk_min
from torchvision.ops import boxes as box_ops

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


def cap_candidates(boxes: torch.Tensor, scores: torch.Tensor, score_thresh: float,
                   cap: CandidateCap) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Foreground boxes (R, K, 4) and scores (R, K) of one image → the capped candidates (boxes (C, 4),
    scores (C,), labels (C,) 1..K), the highest-scoring first when `total` applies."""
    labels = torch.arange(1, scores.shape[1] + 1, device=scores.device).view(1, -1).expand_as(scores)
    if cap.per_class:
        scores, rows = scores.topk(_topk_min(scores, cap.per_class, 0), dim=0)
        boxes = boxes.gather(0, rows[..., None].expand(-1, -1, 4))
        labels = labels.gather(0, rows)
    boxes, scores, labels = boxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)
    keep = torch.where(scores > score_thresh)[0]
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    if cap.total:
        scores, keep = scores.topk(_topk_min(scores, cap.total, 0))
        boxes, labels = boxes[keep], labels[keep]
    return boxes, scores, labels


def class_offset_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou: float) -> torch.Tensor:
    """Per-class NMS as torchvision's traced graph runs it (each class's boxes shifted apart, one NMS), in
    eager PyTorch too. torchvision's eager CPU path switches to one NMS per class above 1000 boxes, which is
    exact where the graph's offsets (up to 1.6 M at 1203 classes and 1333 px) leave float32 about 0.1 px,
    so the checkpoint and the exported model would keep different boxes near the IoU threshold."""
    return box_ops._batched_nms_coordinate_trick(boxes, scores, labels, iou)


def add_candidate_args(parser) -> None:
    """--candidates-per-class / --candidates on an argparse parser (training and export share them)."""
    parser.add_argument("--candidates-per-class", type=int, default=PER_CLASS_CANDIDATES,
                        help=f"per class, at most this many proposals reach NMS (0: no cap; "
                             f"default {PER_CLASS_CANDIDATES})")
    parser.add_argument("--candidates", type=int, default=TOTAL_CANDIDATES,
                        help=f"per image, at most this many (box, class) pairs reach NMS (0: no cap; default "
                             f"{TOTAL_CANDIDATES}, the largest TensorRT's TopK takes; 2000 for SM 5.3 / 6.2)")
