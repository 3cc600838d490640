"""Classifier heads mapping pooled features (N, d) to stage-1 logits (N, K)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LinearHead(nn.Linear):
    """z_j = w_j . x + b_j."""

    kind = "linear"


class CosineHead(nn.Module):
    """z_j = s * (w_j . x) / (|w_j| |x|) with a learnable scale s (initialised to 16 for classification)."""

    kind = "cosine"

    def __init__(self, in_features: int, out_features: int, scale: float = 16.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarity to each class weight."""
        return self.scale * F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))

    def normalized_weight(self) -> torch.Tensor:
        """s * W / |W|, the weight to use on normalised features after folding."""
        return self.scale * F.normalize(self.weight, dim=1)


HEADS = {"linear": LinearHead, "cosine": CosineHead}


def build_head(kind: str, in_features: int, num_classes: int) -> nn.Module:
    """Build a registered head kind ('linear' or 'cosine')."""
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r}; choose from {', '.join(HEADS)}")
    return HEADS[kind](in_features, num_classes)
