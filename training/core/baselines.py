"""Baseline stage-2 calibrators (docs/method.md §4), each with the same interface as DisAlign:
`forward(feat, z) → logits` on frozen features x (N, d) and stage-1 logits z (N, K), and
`fold(head, mode) → FoldedHead` for export. All but NCM fold into plain Gemm weights.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ltdeploy.calibrate.algebra import ncm_rows
from ltdeploy.calibrate.grw import log_prior
from training.core.folded import EPS, FoldedHead, as_numpy, as_tensor, fold_plain, head_weights


class RetrainedClassifier(nn.Module):
    """A freshly initialised classifier of the stage-1 head's kind on the frozen features (cRT; also the G-RW-only
    ablation): linear, or cosine for a cosine stage 1, whose loss leaves the features' norm free, so weight decay
    shrinks it to about 1 and a linear layer on such features barely moves in a stage-2 schedule."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)
        self.register_buffer("cosine", torch.tensor(False))
        self.register_buffer("scale", torch.tensor(1.0))

    @torch.no_grad()
    def match_head(self, head: nn.Module) -> None:
        """Take the stage-1 head's kind (and a cosine head's learned scale, kept fixed) before training."""
        cosine = getattr(head, "kind", None) == "cosine"
        self.cosine.fill_(cosine)
        self.scale.fill_(float(head.scale) if cosine else 1.0)

    def forward(self, feat: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Logits of the new classifier; the stage-1 logits are ignored."""
        if bool(self.cosine):
            return self.scale * F.linear(F.normalize(feat, dim=1), F.normalize(self.fc.weight, dim=1))
        return self.fc(feat)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args) -> None:
        for name, default in (("cosine", False), ("scale", 1.0)):  # checkpoints from before the cosine kind
            state_dict.setdefault(prefix + name, torch.tensor(default))
        super()._load_from_state_dict(state_dict, prefix, *args)

    @torch.no_grad()
    def fold(self, head: nn.Module, mode: str = "affine") -> FoldedHead:
        """The new classifier is already a plain Gemm (a cosine one on the normalised feature)."""
        if bool(self.cosine):
            k = self.fc.weight.shape[0]
            return FoldedHead(self.scale * F.normalize(self.fc.weight, dim=1), torch.zeros(k), k, "plain",
                              cosine=True)
        return fold_plain(self.fc)


class LWS(nn.Module):
    """Learnable weight scaling: zhat_j = f_j * z_j, f initialised to 1."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(num_classes))

    def forward(self, feat: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Per-class scaled stage-1 logits."""
        return self.scale * z

    @torch.no_grad()
    def fold(self, head: nn.Module, mode: str = "affine") -> FoldedHead:
        """f_j scales row j of W and b_j."""
        return fold_plain(head, weight_scale=self.scale)


class TauNorm(nn.Module):
    """tau-normalisation: w_j ← w_j / |w_j|^tau, bias dropped (tau is chosen on the validation split)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("tau", torch.tensor(0.0))
        self.register_buffer("weight", torch.zeros(num_classes, in_features))
        self.register_buffer("cosine", torch.tensor(False))

    @torch.no_grad()
    def set_tau(self, head: nn.Module, tau: float) -> None:
        """Recompute the normalised weight from the stage-1 head for this tau."""
        w, _, cosine = head_weights(head)
        self.tau.fill_(tau)
        self.weight.copy_(w / w.norm(dim=1, keepdim=True).clamp_min(EPS).pow(tau))
        self.cosine.fill_(cosine)

    def forward(self, feat: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """W_tau . x (divided by |x| for a cosine head)."""
        out = F.linear(feat, self.weight)
        return out / feat.norm(dim=1, keepdim=True).clamp_min(EPS) if bool(self.cosine) else out

    @torch.no_grad()
    def fold(self, head: nn.Module, mode: str = "affine") -> FoldedHead:
        """A Gemm with the normalised weight and no bias."""
        k = self.weight.shape[0]
        return FoldedHead(self.weight, torch.zeros(k), k, "plain", cosine=bool(self.cosine))


class NCM(nn.Module):
    """Nearest class mean: centre and L2-normalise x, score_j = -|x - mu_j|^2.

    With |x| = 1 this is 2 mu_j . x - |mu_j|^2 - 1: a Gemm on the centred, normalised feature.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("center", torch.zeros(in_features))
        self.register_buffer("means", torch.zeros(num_classes, in_features))

    @torch.no_grad()
    def set_means(self, feats: torch.Tensor, labels: torch.Tensor, num_classes: int) -> None:
        """Centre on the training-feature mean; class means of the normalised training features."""
        self.center.copy_(feats.mean(0))
        x = F.normalize(feats - self.center, dim=1)
        for c in range(num_classes):
            sel = x[labels == c]
            if len(sel):
                self.means[c] = sel.mean(0)

    def forward(self, feat: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Negative squared distance to each class mean."""
        x = F.normalize(feat - self.center, dim=1)
        return -torch.cdist(x, self.means).pow(2)

    @torch.no_grad()
    def fold(self, head: nn.Module, mode: str = "affine") -> FoldedHead:
        """Centre, Gemm with 2 mu, divide by |x - m|, add -|mu|^2 - 1."""
        k = self.means.shape[0]
        rows, shift = ncm_rows(as_numpy(self.means))
        return FoldedHead(as_tensor(rows), torch.zeros(k), k, "plain", cosine=True, post_bias=as_tensor(shift),
                          center=self.center)


class LogitAdjust(nn.Module):
    """Post-hoc logit adjustment: zhat_j = z_j - tau * log(pi_j), pi the training class prior."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("adjust", torch.zeros(num_classes))

    @torch.no_grad()
    def set_prior(self, counts: list[int], tau: float) -> None:
        """adjust = -tau * log(n_c / sum n); classes with no images count as one."""
        self.adjust.copy_(torch.from_numpy((-tau * log_prior(counts)).astype("float32")))

    def forward(self, feat: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Shifted stage-1 logits."""
        return z + self.adjust

    @torch.no_grad()
    def fold(self, head: nn.Module, mode: str = "affine") -> FoldedHead:
        """The shift becomes part of the bias."""
        return fold_plain(head, add_bias=self.adjust)
