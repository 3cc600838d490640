"""Inference-only heads with the calibration folded in: one Gemm, then a little elementwise work.

DisAlign gives zhat = z + sig(x) * ((alpha - 1) * z + beta) (docs/method.md §6); with a1 = alpha - 1:
- "affine":  Gemm with K+1 rows [W; v] gives z and the confidence logit; zhat = z + sig * (a1 * z + beta).
- "weights": Gemm with 2K+1 rows [W; diag(a1) W; v], bias [b; a1 * b + beta; c]; zhat = z + sig * z2.
- "plain":   no input-dependent calibration (stage 1, or per-class affine maps folded into W, b);
             with `center` (NCM) the feature is centred before the Gemm and the normalisation.
Cosine heads: W is normalised and scaled offline; sig must see the raw feature, so the Gemm runs on raw
x and the class columns are divided by |x| afterwards (a per-class bias is then added after the division).
The rows themselves come from ltdeploy.calibrate.algebra, which `ltdeploy calibrate` folds with too.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ltdeploy.calibrate.algebra import plain_rows

EPS = 1e-12  # the clamp F.normalize uses
MODES = ("plain", "affine", "weights")


class FoldedHead(nn.Module):
    """Pooled features (N, d) → calibrated logits (N, K) with a single matmul."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, num_classes: int, mode: str = "plain",
                 cosine: bool = False, post_bias: torch.Tensor | None = None,
                 a1: torch.Tensor | None = None, beta: torch.Tensor | None = None,
                 center: torch.Tensor | None = None) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown fold mode {mode!r}; choose from {', '.join(MODES)}")
        self.gemm = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.gemm.weight.copy_(weight)
            self.gemm.bias.copy_(bias)
        self.num_classes, self.mode, self.cosine = num_classes, mode, cosine
        self.n_cls = {"plain": 1, "affine": 1, "weights": 2}[mode] * num_classes
        if center is not None and mode != "plain":
            raise ValueError("a centred feature goes with the plain mode only")
        for name, t in (("post_bias", post_bias), ("a1", a1), ("beta", beta), ("center", center)):
            self.register_buffer(name, None if t is None else t.detach().clone().reshape(1, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated logits (N, K)."""
        if self.center is not None:
            x = x - self.center
        out = self.gemm(x)
        cls = out if self.mode == "plain" else out[:, :self.n_cls]
        if self.cosine:
            cls = cls / x.norm(dim=1, keepdim=True).clamp_min(EPS)
        if self.post_bias is not None:
            cls = cls + self.post_bias
        if self.mode == "plain":
            return cls
        sig = torch.sigmoid(out[:, self.n_cls:])
        if self.mode == "affine":
            return cls + sig * (self.a1 * cls + self.beta)
        k = self.num_classes
        return cls[:, :k] + sig * cls[:, k:]


def head_weights(head: nn.Module) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(W, b, cosine) of a stage-1 head, W already normalised and scaled for a cosine head."""
    if getattr(head, "kind", None) == "cosine":
        w = head.normalized_weight()
        return w, torch.zeros(w.shape[0]), True
    return head.weight, head.bias, False


def as_numpy(t: torch.Tensor | None) -> np.ndarray | None:
    """A tensor's values for ltdeploy.calibrate.algebra (None stays None)."""
    return None if t is None else t.detach().cpu().numpy()


def as_tensor(a: np.ndarray) -> torch.Tensor:
    """algebra's rows back as a tensor."""
    return torch.from_numpy(np.ascontiguousarray(a))


def fold_plain(head: nn.Module, weight_scale: torch.Tensor | None = None,
               add_bias: torch.Tensor | None = None) -> FoldedHead:
    """Fold a head (optionally times a per-class scale, plus a per-class bias) into one Gemm."""
    w, b, cosine = head_weights(head)
    if cosine:  # the shift comes after the division by |x|
        w2, b2 = plain_rows(as_numpy(w), as_numpy(b), as_numpy(weight_scale))
        extra = torch.zeros(w.shape[0]) if add_bias is None else add_bias
        return FoldedHead(as_tensor(w2), as_tensor(b2), w.shape[0], "plain", cosine=True, post_bias=extra)
    w2, b2 = plain_rows(as_numpy(w), as_numpy(b), as_numpy(weight_scale), as_numpy(add_bias))
    return FoldedHead(as_tensor(w2), as_tensor(b2), w.shape[0], "plain")


class FoldedConvHead(nn.Module):
    """Per-pixel calibration folded into one 1x1 convolution: (N, C, H, W) → calibrated logits (N, K, H, W).

    Modes as FoldedHead: "plain" (K channels), "affine" (K+1: [W; v], then z + sig * (a1 * z + beta)),
    "weights" (2K+1: [W; diag(a1) W; v], bias [b; a1 * b + beta; c], then z + sig * z2).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, num_classes: int, mode: str = "plain",
                 a1: torch.Tensor | None = None, beta: torch.Tensor | None = None) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown fold mode {mode!r}; choose from {', '.join(MODES)}")
        self.conv = nn.Conv2d(weight.shape[1], weight.shape[0], 1)
        with torch.no_grad():
            self.conv.weight.copy_(weight.reshape(self.conv.weight.shape))
            self.conv.bias.copy_(bias)
        self.k, self.mode = num_classes, mode
        for name, t in (("a1", a1), ("beta", beta)):
            self.register_buffer(name, None if t is None else t.detach().clone().reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated per-pixel logits."""
        out = self.conv(x)
        if self.mode == "plain":
            return out
        k = self.k
        z = out[:, :k]
        if self.mode == "affine":
            return z + torch.sigmoid(out[:, k:]) * (self.a1 * z + self.beta)
        return z + torch.sigmoid(out[:, 2 * k:]) * out[:, k:2 * k]
