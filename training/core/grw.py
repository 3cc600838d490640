"""Generalized re-weighting (DisAlign eqs. 8-11)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ltdeploy.calibrate.grw import grw_weights as numpy_grw_weights


def grw_weights(counts: list[int] | torch.Tensor, rho: float) -> torch.Tensor:
    """ltdeploy.calibrate.grw's weights as a tensor (mean weight 1; rho 0 instance-, 1 class-balanced)."""
    return torch.from_numpy(numpy_grw_weights(torch.as_tensor(counts).tolist(), rho))


class GRWLoss(nn.Module):
    """L = -(1/N) sum_i w_{y_i} log p(y_i | x_i).

    Note the 1/N: torch's `cross_entropy(weight=...)` with mean reduction divides by the sum of the
    batch's weights instead, which cancels the re-weighting's overall scale batch by batch.

    For segmentation, logits are (N, K, H, W), targets (N, H, W), n_c are pixel counts, and pixels
    labelled `ignore_index` are left out of both the sum and the count.
    """

    def __init__(self, counts: list[int], rho: float, ignore_index: int = -100) -> None:
        super().__init__()
        self.rho, self.ignore_index = rho, ignore_index
        self.register_buffer("weight", grw_weights(counts, rho))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted mean negative log-likelihood over the batch (over its valid pixels)."""
        valid = target != self.ignore_index
        nll = F.cross_entropy(logits, target, reduction="none", ignore_index=self.ignore_index)
        w = self.weight[torch.where(valid, target, torch.zeros_like(target))]
        return (w * nll)[valid].sum() / valid.sum().clamp_min(1)
