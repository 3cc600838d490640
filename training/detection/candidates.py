"""The candidate cap (training/detection/candidate_cap.py) applied to a detector's tensors, and the class-offset NMS
after it."""
from __future__ import annotations

import torch
from torchvision.models.detection._utils import _topk_min
from torchvision.ops import boxes as box_ops

from training.detection.candidate_cap import CandidateCap


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
