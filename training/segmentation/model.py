"""The long-tail segmenter: body → decoder feature → 1x1 classifier → optional per-pixel calibration →
bilinear upsampling to the input size. Calibration runs before upsampling, as the classifier does."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from training.core.folded import FoldedConvHead
from training.core.libraries import library_versions
from training.core.two_stage import TwoStageModel
from training.segmentation.bodies import build_seg_body


def upsample(logits: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize of per-pixel logits to the input's (H, W)."""
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class LTSegmenter(TwoStageModel):
    """Maps a preprocessed batch (N, 3, H, W) to per-pixel logits (N, K, H, W)."""

    def __init__(self, body: str, num_classes: int, pretrained: bool = False) -> None:
        super().__init__()
        self.body, self.feat_dim = build_seg_body(body, pretrained)
        self.head = nn.Conv2d(self.feat_dim, num_classes, 1)
        self.calibrator: nn.Module | None = None
        self.arch = {"task": "segmentation", "body": body, "num_classes": num_classes,
                     "libraries": library_versions(body)}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder feature (N, C, h, w): what stage 2 caches."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated logits at the input resolution."""
        return upsample(self.forward_head(self.forward_features(x)), x.shape[-2:])

    @torch.no_grad()
    def folded(self, mode: str = "affine") -> "FoldedSegmenter":
        """An inference copy with classifier and calibration folded into one 1x1 conv."""
        head = copy.deepcopy(self.head).eval()
        if self.calibrator is None:
            fhead = FoldedConvHead(head.weight.flatten(1), head.bias, head.out_channels, "plain")
        else:
            fhead = self.calibrator.fold(head, mode)
        return FoldedSegmenter(copy.deepcopy(self.body).eval(), fhead).eval()


class FoldedSegmenter(nn.Module):
    """Body + FoldedConvHead + upsampling: what export writes to ONNX."""

    def __init__(self, body: nn.Module, head: FoldedConvHead) -> None:
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated logits (N, K, H, W)."""
        return upsample(self.head(self.body(x)), x.shape[-2:])


class ArgmaxLabels(nn.Module):
    """Ends a segmenter in an in-graph argmax: the label map (N, H, W), uint8 up to 256 classes else int32."""

    def __init__(self, segmenter: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.segmenter, self.dtype = segmenter, torch.uint8 if num_classes <= 256 else torch.int32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel class index."""
        return self.segmenter(x).argmax(1).to(self.dtype)
