"""What every two-stage model shares: a frozen stage-1 network and an optional stage-2 calibrator."""
from __future__ import annotations

import torch
from torch import nn


class TwoStageModel(nn.Module):
    """Subclasses set `self.head` (stage-1 classifier) and a feature extractor; stage 2 sets `calibrator`."""

    head: nn.Module
    calibrator: nn.Module | None

    def stage1_modules(self) -> list[nn.Module]:
        """The modules stage 2 freezes (all but the calibrator)."""
        return [m for name, m in self.named_children() if name != "calibrator"]

    def forward_head(self, feat: torch.Tensor, calibrated: bool = True) -> torch.Tensor:
        """Logits from features (classes on dim 1); stage-1 logits when calibrated is False."""
        z = self.head(feat)
        if calibrated and self.calibrator is not None:
            return self.calibrator(feat, z)
        return z

    def freeze_stage1(self) -> None:
        """Freeze everything of stage 1, BatchNorm statistics included; only the calibrator trains."""
        for m in self.stage1_modules():
            for p in m.parameters():
                p.requires_grad_(False)
            m.eval()

    def train(self, mode: bool = True) -> "TwoStageModel":
        """Train mode, except for the frozen parts of stage 1 (all of it in stage 2, the backbone of a linear
        probe), which stay in eval so their BatchNorm statistics never move."""
        super().train(mode)
        if mode:
            for m in self.stage1_modules():
                if not any(p.requires_grad for p in m.parameters()):
                    m.eval()
        return self
