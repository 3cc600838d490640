"""PCB (docs/method.md §5): a running foreground confusion matrix, soft targets from it, and the per-pass loss."""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

PASS_WEIGHTS = (0.2, 0.2, 0.6)


def pass_strength(a: float, r: int, passes: int) -> float:
    """a_r = a * r / (R - 1): pass 0 gets no PCB, the last pass gets a."""
    return 0.0 if passes < 2 else a * r / (passes - 1)


class ConfusionEMA(nn.Module):
    """M (K x K): row y is the running mean foreground probability of RoIs whose ground truth is y.

    Each update takes the batch mean per present class, sums it across ranks when distributed (so every
    rank holds the same M), then M_y <- gamma * M_y + (1 - gamma) * mbar_y and renormalises the row. A row's
    first update sets it; rows absent from the batch stay as they are.
    """

    def __init__(self, num_classes: int, gamma: float = 0.99) -> None:
        super().__init__()
        self.gamma = gamma
        self.register_buffer("matrix", torch.zeros(num_classes, num_classes))
        self.register_buffer("seen", torch.zeros(num_classes, dtype=torch.bool))

    @torch.no_grad()
    def update(self, fg_logits: torch.Tensor, labels: torch.Tensor) -> None:
        """fg_logits (N, K) of positive RoIs, labels (N,) in 0..K-1."""
        k = self.matrix.shape[0]
        p = fg_logits.detach().float().softmax(1)
        sums = torch.zeros(k, k, device=p.device).index_add_(0, labels, p)
        counts = torch.bincount(labels, minlength=k).float()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)
            dist.all_reduce(counts)
        present = counts > 0
        mbar = sums[present] / counts[present, None]
        old = self.matrix[present]
        first = ~self.seen[present]
        new = torch.where(first[:, None], mbar, self.gamma * old + (1 - self.gamma) * mbar)
        self.matrix[present] = new / new.sum(1, keepdim=True).clamp_min(1e-12)
        self.seen |= present

    def soft_targets(self, labels: torch.Tensor) -> torch.Tensor:
        """t_k = M[k, y] / sum_i M[i, y] (column y, normalised) for each label y: (N, K)."""
        col = self.matrix / self.matrix.sum(0, keepdim=True).clamp_min(1e-12)
        return col[:, labels].t()

    @property
    def ready(self) -> bool:
        """Every class has been seen at least once."""
        return bool(self.seen.all())


def pcb_pass_loss(logits: torch.Tensor, labels: torch.Tensor, confusion: ConfusionEMA | None,
                  a_r: float) -> torch.Tensor:
    """One pass: mean over RoIs of CE(y) for negatives, (1 - a_r) CE(y) + a_r CE(t) for positives.

    logits (N, K+1) with background at column 0 (torchvision's convention), labels (N,) in 0..K.
    """
    logits = logits.float()  # autocast's bf16 / fp16 logits: the soft targets and their CE in fp32
    ce = F.cross_entropy(logits, labels, reduction="none")
    if confusion is None or a_r == 0:
        return ce.mean()
    pos = labels > 0
    soft = torch.zeros_like(logits)
    soft[pos, 1:] = confusion.soft_targets(labels[pos] - 1)
    soft_ce = -(soft * F.log_softmax(logits, 1)).sum(1)
    return torch.where(pos, (1 - a_r) * ce + a_r * soft_ce, ce).mean()


def pairwise_bias(confusion: np.ndarray) -> float:
    """PwB(M) = ||M - M^T||_F (PCB's measure of asymmetric confusion; lower is better)."""
    m = np.asarray(confusion, np.float64)
    return float(np.linalg.norm(m - m.T))
