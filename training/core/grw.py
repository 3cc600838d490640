"""Generalized re-weighting (DisAlign eqs. 8-11)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def grw_weights(counts: list[int] | torch.Tensor, rho: float) -> torch.Tensor:
    """w_c = K * (1/r_c)^rho / sum_k (1/r_k)^rho with r_c = n_c / sum n: mean weight 1.

    rho = 0 is instance-balanced (all ones), rho = 1 class-balanced. Classes with no images get the
    weight of a class with one image (they never occur in the loss anyway).
    """
    n = torch.as_tensor(counts, dtype=torch.float64).clamp_min(1)
    r = n / n.sum()
    w = r.pow(-rho)
    return (w * len(w) / w.sum()).float()


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
