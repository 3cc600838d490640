"""The RoI box branch: shared box head, our box predictor (linear or cosine, optional DisAlign on the
foreground logits) and PCB's iterative passes, plus the RoIHeads that trains them.

torchvision's RoIHeads runs `box_head` then `box_predictor` on the pooled RoI features. We give it an
identity `box_head` and put the whole branch, all R passes, into `box_predictor` (RoIBoxBranch): inference,
post-processing, masks and ONNX export stay torchvision's own, and only the classification loss is ours.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import boxes as box_ops

from training.core.calibration import DisAlign
from training.core.heads import build_head
from training.detection.candidate_cap import CandidateCap
from training.detection.candidates import cap_candidates, class_offset_nms
from training.detection.pcb import PASS_WEIGHTS, ConfusionEMA, pass_strength, pcb_pass_loss


class BoxPredictor(nn.Module):
    """Class logits (N, K+1; background at 0) and class-specific box deltas (N, 4(K+1))."""

    def __init__(self, in_features: int, num_classes: int, head: str = "linear") -> None:
        super().__init__()
        self.cls_score = build_head(head, in_features, num_classes)
        self.bbox_pred = nn.Linear(in_features, 4 * num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, deltas) from the box-head representation x (N, d)."""
        return self.cls_score(x), self.bbox_pred(x)


class RoIBoxBranch(nn.Module):
    """R passes through one weight-shared box head (docs/method.md §5); R = 1 is the plain Faster R-CNN head.

    After pass r (< R-1), MLP_z maps the K+1 logits to a channel bias X_z and MLP_b maps the 4K foreground
    deltas to a 7x7 map X_b; the pooled features become X * X_b + X_z. X_b is parametrised as 1 + MLP_b(.)
    with both MLPs' last layers zero-initialised, so the passes start as identical copies (the same function
    class as PCB's X_b, docs/method.md §5; a random multiplicative map would start by scrambling the features).
    Stage 2's `calibrator` (DisAlign) maps the K foreground logits of the last pass only: earlier passes
    feed the next one and belong to the frozen stage-1 network. The background logit is left alone.
    Training keeps every pass's logits in `pass_logits` for the loss.
    """

    def __init__(self, channels: int, resolution: int, num_classes: int, representation: int = 1024,
                 head: str = "linear", passes: int = 1, hidden: int = 512) -> None:
        super().__init__()
        self.box_head = TwoMLPHead(channels * resolution ** 2, representation)
        self.predictor = BoxPredictor(representation, num_classes, head)
        self.passes, self.resolution = passes, resolution
        self.calibrator: nn.Module | None = None
        self.final_score: nn.Module | None = None  # the last pass's folded classifier, after fold()
        self.pass_logits: list[torch.Tensor] = []
        if passes > 1:
            self.to_bias = nn.Sequential(nn.Linear(num_classes, hidden), nn.ReLU(), nn.Linear(hidden, channels))
            self.to_map = nn.Sequential(nn.Linear(4 * (num_classes - 1), hidden), nn.ReLU(),
                                        nn.Linear(hidden, resolution ** 2))
            for mlp in (self.to_bias, self.to_map):
                nn.init.zeros_(mlp[-1].weight)
                nn.init.zeros_(mlp[-1].bias)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled RoI features (N, C, S, S) → the last pass's (logits, deltas)."""
        x, logits = pooled, []
        for r in range(self.passes):
            feat = self.box_head(x)
            if r == self.passes - 1 and self.final_score is not None:
                z, deltas = self.final_score(feat), self.predictor.bbox_pred(feat)
            else:
                z, deltas = self.predictor(feat)
            if r == self.passes - 1 and self.calibrator is not None:
                z = torch.cat([z[:, :1], self.calibrator(feat, z[:, 1:])], 1)
            logits.append(z)
            if r < self.passes - 1:
                x_b = 1 + self.to_map(deltas[:, 4:]).view(-1, 1, self.resolution, self.resolution)
                x = x * x_b + self.to_bias(z)[:, :, None, None]
        self.pass_logits = logits if self.training else []
        return z, deltas

    @torch.no_grad()
    def fold(self, mode: str = "affine") -> None:
        """Fold the calibrator into the last pass's classifier (DisAlign padded with alpha 1, beta 0 for the
        background, so its logit stays the stage-1 one); earlier passes keep the stage-1 classifier."""
        cal = self.calibrator
        if cal is None:
            return
        padded = DisAlign(cal.confidence.in_features, cal.alpha.numel() + 1)
        padded.alpha.copy_(torch.cat([torch.ones(1), cal.alpha]))
        padded.beta.copy_(torch.cat([torch.zeros(1), cal.beta]))
        padded.confidence.load_state_dict(cal.confidence.state_dict())
        self.final_score, self.calibrator = padded.fold(self.predictor.cls_score, mode), None


def pass_weights(passes: int) -> list[float]:
    """Classification loss weight per pass: 0.2, 0.2, 0.6 for R = 3; 1 for R = 1."""
    if passes == len(PASS_WEIGHTS):
        return list(PASS_WEIGHTS)
    return [0.2] * (passes - 1) + [1 - 0.2 * (passes - 1)]


def label_mask_probs(predictor: nn.Module, pooled: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mask probabilities (N, 1, M, M) of each detection's own class: torchvision's mask predictor with its
    last 1x1 convolution evaluated for that class alone. torchvision computes all K + 1 classes and keeps
    one: 300 x 1204 x 28 x 28 floats (1.1 GB, several copies in ONNX Runtime) at LVIS's 1203 classes."""
    x = predictor.relu(predictor.conv5_mask(pooled))
    conv = predictor.mask_fcn_logits
    weight = conv.weight[labels].flatten(1).unsqueeze(1)  # (N, 1, C)
    logits = torch.matmul(weight, x.flatten(2)) + conv.bias[labels].view(-1, 1, 1)  # (N, 1, M*M)
    return logits.sigmoid().reshape(x.shape[0], 1, x.shape[2], x.shape[3])


class LTRoIHeads(RoIHeads):
    """torchvision's RoIHeads with our classification loss: per-pass CE with PCB soft targets, or (stage 2)
    the G-RW loss on the calibrated logits. Box regression and masks keep torchvision's losses."""

    @classmethod
    def adopt(cls, heads: RoIHeads, num_classes: int, pcb: bool, strength: float = 0.4,
              cap: CandidateCap = CandidateCap()) -> "LTRoIHeads":
        """Turn a built RoIHeads into this class in place (its modules and settings are kept).

        No class-level defaults here: a class attribute named like a submodule would shadow it.
        """
        heads.__class__ = cls
        heads.candidate_cap = cap
        heads.confusion = ConfusionEMA(num_classes - 1) if pcb else None
        heads.pcb_strength, heads.pcb_active = strength, False
        heads.class_weight = None  # stage 2: G-RW weights over the K+1 classes
        return heads

    def select_training_samples(self, proposals, targets):  # type: ignore[override]
        """torchvision's sampling; the sampled labels are kept for the classification loss."""
        out = super().select_training_samples(proposals, targets)
        self._sampled_labels = torch.cat(out[2])
        return out

    def forward(self, features, proposals, image_shapes, targets=None):  # type: ignore[override]
        """torchvision's forward, with loss_classifier replaced in training and, in inference, each
        detection's mask computed for its own class only."""
        if self.training or not self.has_mask():
            result, losses = super().forward(features, proposals, image_shapes, targets)
            if self.training:
                losses["loss_classifier"] = self.classification_loss(self._sampled_labels)
            return result, losses
        pool, self.mask_roi_pool = self.mask_roi_pool, None  # torchvision's mask branch off: ours below
        try:
            result, losses = super().forward(features, proposals, image_shapes, targets)
        finally:
            self.mask_roi_pool = pool
        boxes = [r["boxes"] for r in result]
        pooled = self.mask_head(self.mask_roi_pool(features, boxes, image_shapes))
        probs = label_mask_probs(self.mask_predictor, pooled, torch.cat([r["labels"] for r in result]))
        if len(result) == 1:
            result[0]["masks"] = probs
        else:
            for r, p in zip(result, probs.split([b.shape[0] for b in boxes])):
                r["masks"] = p
        return result, losses

    def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):  # type: ignore[override]
        """torchvision's, with the candidate cap (training.detection.candidates) between the score threshold
        and the per-class NMS, which runs as in the exported graph; with both caps at 0 it is torchvision's."""
        boxes_per_image = [p.shape[0] for p in proposals]  # traced as shapes, not constants
        pred_boxes = self.box_coder.decode(box_regression, proposals).split(boxes_per_image, 0)
        pred_scores = F.softmax(class_logits, -1).split(boxes_per_image, 0)
        all_boxes, all_scores, all_labels = [], [], []
        for boxes, scores, image_shape in zip(pred_boxes, pred_scores, image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
            boxes, scores, labels = cap_candidates(boxes[:, 1:], scores[:, 1:], self.score_thresh,
                                                   self.candidate_cap)
            keep = class_offset_nms(boxes, scores, labels, self.nms_thresh)[:self.detections_per_img]
            all_boxes.append(boxes[keep])
            all_scores.append(scores[keep])
            all_labels.append(labels[keep])
        return all_boxes, all_scores, all_labels

    def classification_loss(self, labels: torch.Tensor) -> torch.Tensor:
        """Weighted sum over passes; the confusion matrix is updated from the last pass's positives."""
        logits = self.box_predictor.pass_logits
        if self.class_weight is not None:  # stage 2: G-RW, L = (1/N) sum_i w_{y_i} CE_i
            ce = F.cross_entropy(logits[-1], labels, reduction="none")
            return (self.class_weight.to(ce.device)[labels] * ce).mean()
        pos = labels > 0
        if self.confusion is not None:  # every rank calls it, positives or not: it all-reduces
            self.confusion.update(logits[-1][pos, 1:], labels[pos] - 1)
        use_pcb = self.confusion is not None and self.pcb_active
        r_all = len(logits)
        return sum(w * pcb_pass_loss(z, labels, self.confusion if use_pcb else None,
                                     pass_strength(self.pcb_strength, r, r_all))
                   for r, (w, z) in enumerate(zip(pass_weights(r_all), logits)))
