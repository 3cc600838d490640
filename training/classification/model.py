"""The long-tail classifier: backbone → pooled feature → head → optional calibration."""
from __future__ import annotations

import copy

import torch
from torch import nn

from training.classification.backbones import build_backbone
from training.core.folded import FoldedHead, fold_plain
from training.core.heads import build_head
from training.core.libraries import library_versions
from training.core.two_stage import TwoStageModel


class LTClassifier(TwoStageModel):
    """Maps a preprocessed batch (N, 3, H, W) to logits (N, K); calibrated when a calibrator is set."""

    def __init__(self, backbone: str, head: str, num_classes: int, pretrained: bool = False) -> None:
        super().__init__()
        self.backbone, self.feat_dim = build_backbone(backbone, pretrained)
        self.head = build_head(head, self.feat_dim, num_classes)
        self.calibrator: nn.Module | None = None
        # everything that rebuilds the network (never where its weights came from)
        self.arch = {"backbone": backbone, "head": head, "num_classes": num_classes,
                     "libraries": library_versions(backbone)}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (N, d): what stage 2 caches."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated logits (N, K)."""
        return self.forward_head(self.forward_features(x))

    @torch.no_grad()
    def folded(self, mode: str = "affine") -> "FoldedClassifier":
        """An inference copy with head and calibration folded into one Gemm (see folded.py)."""
        head = copy.deepcopy(self.head).eval()
        if self.calibrator is None:
            fhead = fold_plain(head)
        else:
            fhead = self.calibrator.fold(head, mode)
        return FoldedClassifier(copy.deepcopy(self.backbone).eval(), fhead).eval()


class FoldedClassifier(nn.Module):
    """Backbone + FoldedHead: what export writes to ONNX."""

    def __init__(self, backbone: nn.Module, head: FoldedHead) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated logits (N, K)."""
        return self.head(self.backbone(x))
