"""Stage-1 steps, feature extraction and the stage-2 fit on cached features, shared by the tasks (the training
loop itself is training/core/engine.py)."""
from __future__ import annotations

import time
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from training.config import TrainConfig
from training.core.device import module_device
from training.core.engine import cosine_sgd, train_epochs


def augment(x: torch.Tensor, shift: int, hflip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to `shift` pixels (reflect padding) and optional horizontal flip."""
    if shift > 0:
        n, _, h, w = x.shape
        padded = F.pad(x, (shift, shift, shift, shift), mode="reflect")
        dx = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
        dy = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
        x = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    if hflip:
        flip = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def train_stage1(model: nn.Module, loader: DataLoader, cfg: TrainConfig) -> dict:
    """Joint training of backbone and head with instance-balanced sampling and plain cross-entropy."""
    def step(net: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, int, int]:
        logits = net(augment(x, cfg.shift, cfg.hflip, gen))
        return F.cross_entropy(logits, y), len(y), int((logits.argmax(1) == y).sum())
    return train_epochs(model, loader, cfg, step)


@torch.no_grad()
def extract_features(model: nn.Module, loader: DataLoader, desc: str = "features") -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features (N, d) and labels (N,) of a loader, model in eval mode."""
    model.eval()
    feats, labels = [], []
    device = module_device(model)
    for x, y in tqdm(loader, desc=desc, unit="batch", leave=False):
        feats.append(model.forward_features(x.to(device, non_blocking=True)).float().cpu())
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


@torch.no_grad()
def predict_logits(model: nn.Module, loader: DataLoader, desc: str = "predict") -> torch.Tensor:
    """Logits (N, K) of a non-shuffled loader, model in eval mode."""
    model.eval()
    device = module_device(model)
    return torch.cat([model(x.to(device, non_blocking=True)).float().cpu()
                      for x, _ in tqdm(loader, desc=desc, unit="batch", leave=False)])


def fit_on_features(forward: Callable[[torch.Tensor], torch.Tensor], params: list[nn.Parameter],
                    loss_fn: nn.Module, epoch_batches: Callable[[], Iterable], steps_per_epoch: int,
                    cfg: TrainConfig) -> dict:
    """Train `params` so that forward(features) fits the labels under loss_fn.

    epoch_batches() yields one epoch of (features, labels) batches (see stage2_data.py).
    """
    opt, sched = cosine_sgd(params, cfg.lr, cfg.wd, cfg.epochs * steps_per_epoch)
    device = params[0].device if params else torch.device("cpu")
    loss_fn.to(device)  # a G-RW loss holds its class weights
    log, start = [], time.perf_counter()
    bar = tqdm(range(cfg.epochs), desc=f"stage 2 ({cfg.method})", unit="epoch")
    for epoch in bar:
        loss_sum, total = 0.0, 0
        for feat, y in epoch_batches():
            feat, y = feat.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = loss_fn(forward(feat), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(y)
            total += len(y)
        log.append({"epoch": epoch + 1, "loss": loss_sum / total})
        bar.set_postfix(loss=f"{loss_sum / total:.4f}")
    return {"epochs": log, "seconds": round(time.perf_counter() - start, 2)}
