"""DisAlign calibration (paper eqs. 4-7): per-class magnitude alpha, margin beta, confidence sig(x)."""
from __future__ import annotations

import torch
from torch import nn

from ltdeploy.calibrate.algebra import affine_rows, weights_rows
from training.core.folded import FoldedConvHead, FoldedHead, as_numpy, as_tensor, head_weights


class DisAlign(nn.Module):
    """zhat = z + sig(x) * ((alpha - 1) * z + beta), sig(x) = sigmoid(v . x + c).

    Initialised to the identity (alpha = 1, beta = 0, v = 0, c = 0): the calibrated head starts equal to
    the stage-1 head. x is the raw pooled feature (also for cosine heads); no ReLU before the sigmoid.
    """

    def __init__(self, in_features: int, num_classes: int, confidence: nn.Module | None = None) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(num_classes))
        self.beta = nn.Parameter(torch.zeros(num_classes))
        self.confidence = confidence if confidence is not None else nn.Linear(in_features, 1)
        nn.init.zeros_(self.confidence.weight)
        nn.init.zeros_(self.confidence.bias)

    def sigma(self, x: torch.Tensor) -> torch.Tensor:
        """Confidence sig(x), one per sample (N, 1) or per pixel (N, 1, H, W)."""
        return torch.sigmoid(self.confidence(x))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Calibrated logits from features x and stage-1 logits z (classes on dim 1)."""
        shape = (1, -1) + (1,) * (z.dim() - 2)
        s = self.sigma(x)
        return s * (self.alpha.view(shape) * z + self.beta.view(shape)) + (1 - s) * z

    @torch.no_grad()
    def fold(self, head: nn.Module, mode: str = "affine") -> FoldedHead:
        """Fold this calibration and its stage-1 head into one FoldedHead (see folded.py)."""
        w, b, cosine = head_weights(head)
        k, a1 = w.shape[0], self.alpha - 1
        w, b, v, c = (as_numpy(t) for t in (w, b, self.confidence.weight, self.confidence.bias))
        if mode == "affine":
            rows, bias = affine_rows(w, b, v, c)
            return FoldedHead(as_tensor(rows), as_tensor(bias), k, "affine", cosine=cosine, a1=a1, beta=self.beta)
        if mode == "weights":
            rows, bias, post = weights_rows(w, b, as_numpy(a1), as_numpy(self.beta), v, c, cosine)
            return FoldedHead(as_tensor(rows), as_tensor(bias), k, "weights", cosine=cosine,
                              post_bias=None if post is None else as_tensor(post))
        raise ValueError(f"DisAlign folds as 'affine' or 'weights', not {mode!r}")


class PixelDisAlign(DisAlign):
    """DisAlign per pixel (segmentation): the same map on every position of logits (N, K, H, W).

    sig(x) comes from a 1x1 convolution on the decoder feature (N, C, H, W), with no ReLU before the
    sigmoid; it runs before upsampling, as the classifier does.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__(in_channels, num_classes, confidence=nn.Conv2d(in_channels, 1, 1))

    @torch.no_grad()
    def fold(self, head: nn.Conv2d, mode: str = "affine") -> FoldedConvHead:
        """One 1x1 convolution: K+1 channels [W; v] ("affine") or 2K+1 [W; diag(a1) W; v] ("weights")."""
        b = head.bias if head.bias is not None else torch.zeros(head.out_channels)
        w, b, v, c = (as_numpy(t) for t in (head.weight.flatten(1), b, self.confidence.weight.flatten(1),
                                              self.confidence.bias))
        k, a1 = w.shape[0], self.alpha - 1
        if mode == "affine":
            rows, bias = affine_rows(w, b, v, c)
            return FoldedConvHead(as_tensor(rows), as_tensor(bias), k, "affine", a1=a1, beta=self.beta)
        if mode == "weights":
            rows, bias, _ = weights_rows(w, b, as_numpy(a1), as_numpy(self.beta), v, c)
            return FoldedConvHead(as_tensor(rows), as_tensor(bias), k, "weights")
        raise ValueError(f"DisAlign folds as 'affine' or 'weights', not {mode!r}")


def random_disalign(cal: torch.nn.Module) -> torch.nn.Module:
    """DisAlign parameters drawn at random (not the identity), so that timing sees real arithmetic."""
    with torch.no_grad():
        cal.alpha.uniform_(0.8, 1.3)
        cal.beta.normal_(0, 0.5)
        cal.confidence.weight.normal_(0, 0.01)
    return cal
