"""Segmentation training loops: stage 1 with cross-entropy, stage 2 per-pixel calibration with G-RW
weights from pixel counts (docs/method.md §2-3). Pixels labelled 255 are ignored throughout."""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ltdeploy.datasets.seg_folders import IGNORE
from training.config import TrainConfig
from training.core.device import module_device
from training.core.engine import train_epochs
from training.core.grw import GRWLoss
from training.core.loops import fit_on_features
from training.core.preload import InMemory
from training.segmentation.model import LTSegmenter, upsample

FEATURE_CACHE_LIMIT_BYTES = 4 << 30  # decoder features of the training split kept in memory up to this


def random_hflip(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip image and label map together, each sample with probability 1/2."""
    flip = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x), torch.where(flip[:, None, None], y.flip(2), y)


def train_seg_stage1(model: LTSegmenter, loader: DataLoader, cfg: TrainConfig) -> dict:
    """Joint training of body and classifier: per-pixel cross-entropy, ignore label skipped."""
    def step(net: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, int, int]:
        if cfg.hflip:
            x, y = random_hflip(x, y, gen)
        logits = net(x)
        valid = y != IGNORE
        right = int(((logits.argmax(1) == y) & valid).sum())  # no boolean-indexed copies
        return F.cross_entropy(logits, y, ignore_index=IGNORE), int(valid.sum()), right
    return train_epochs(model, loader, cfg, step, acc_name="pixel_acc")


class SegStage2Data:
    """Per-epoch (decoder feature, label map) batches of the training split, from the frozen body.

    Features are computed once and kept in memory when they fit (stage 2 uses no augmentation);
    otherwise each epoch recomputes them.
    """

    def __init__(self, model: LTSegmenter, loader: DataLoader, counts: list[int], cfg: TrainConfig) -> None:
        self.model, self.loader, self.counts, self.cfg = model, loader, counts, cfg
        self.gen = torch.Generator().manual_seed(cfg.seed)
        n = len(loader.dataset)
        x0, _ = loader.dataset[0]
        self.device = module_device(model)
        with torch.no_grad():
            c, h, w = model.forward_features(x0[None].to(self.device)).shape[1:]
        self.cached = not cfg.no_cache and n * c * h * w * 4 < FEATURE_CACHE_LIMIT_BYTES
        self.label_size = tuple(loader.dataset[0][1].shape)
        self._features: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch."""
        return -(-len(self.loader.dataset) // self.cfg.batch_size)

    def features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All training decoder features (N, C, h, w) and label maps (N, H, W), computed once."""
        if self._features is None:
            feats, labels = [], []
            with torch.no_grad():
                streamed = not isinstance(self.loader.dataset, InMemory)  # large sets decode in workers
                for x, y in tqdm(DataLoader(self.loader.dataset, batch_size=32,
                                            num_workers=self.cfg.workers if streamed else 0), desc="cache features",
                                 unit="batch", leave=False):
                    feats.append(self.model.forward_features(x.to(self.device)).float().cpu())
                    labels.append(y)
            self._features = torch.cat(feats), torch.cat(labels)
        return self._features

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One shuffled epoch of (features, labels)."""
        bs = self.cfg.batch_size
        if self.cached:
            feats, labels = self.features()
            order = torch.randperm(len(labels), generator=self.gen)
            for i in range(0, len(order), bs):
                yield feats[order[i:i + bs]], labels[order[i:i + bs]]
            return
        for x, y in DataLoader(self.loader.dataset, batch_size=bs, shuffle=True, generator=self.gen):
            with torch.no_grad():  # never yield inside no_grad: the mode would leak into the consumer
                feat = self.model.forward_features(x.to(self.device))
            yield feat, y


def fit_seg_calibrator(calibrator: nn.Module, model: LTSegmenter, data: SegStage2Data,
                       cfg: TrainConfig) -> dict:
    """Fit a per-pixel calibrator with the G-RW loss (pixel counts, rho), logits upsampled to the labels."""
    loss = GRWLoss(data.counts, cfg.rho, ignore_index=IGNORE)

    def forward(feat: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            z = model.head(feat)
        return upsample(calibrator(feat, z), data.label_size)

    params = [p for p in calibrator.parameters() if p.requires_grad]
    log = fit_on_features(forward, params, loss, data.batches, data.steps_per_epoch, cfg)
    return {"rho": cfg.rho, "sampling": "instance", "grw_weights": [round(float(w), 6) for w in loss.weight], **log}

