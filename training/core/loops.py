"""Training and inference loops shared by the scripts (torchvision references' engine.py style)."""
from __future__ import annotations

import math
import time
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from training.config import TrainConfig, as_record
from training.core.device import Placement, module_device
from training.core.resume import Interrupted, NonFiniteLoss, TrainState, load_state, save_state, stop_requests


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


def cosine_sgd(params: list[nn.Parameter], lr: float, wd: float, steps: int) -> tuple:
    """SGD (momentum 0.9) with a per-step cosine schedule to zero."""
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    return opt, sched


StepFn = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, int, int]]
# batch and augmentation generator → (loss, targets covered, targets right)


def train_epochs(model: nn.Module, loader: DataLoader, cfg: TrainConfig, step: StepFn,
                 acc_name: str = "train_acc") -> dict:
    """SGD with a cosine schedule over `cfg.epochs` epochs of `loader` on the run's device and precision;
    step(x, y, gen) gives the batch's loss, how many targets it covers and how many were right.

    Resumable: every `cfg.save_every` epochs, and when Ctrl-C or SIGTERM stops the run, the training state goes
    to `cfg.out`; `cfg.resume` continues from one. A non-finite loss stops the run, naming the iteration."""
    place = Placement.from_config(cfg)
    place.prepare(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt, sched = cosine_sgd(params, cfg.lr, cfg.wd, cfg.epochs * len(loader))
    scaler = place.scaler()
    gen = torch.Generator().manual_seed(cfg.seed)
    generators = {"augment": gen, **({"loader": loader.generator} if loader.generator is not None else {})}
    state = load_state(cfg.resume, model, opt, sched, scaler, generators) if getattr(cfg, "resume", None) \
        else TrainState()
    start = time.perf_counter()
    bar = tqdm(range(state.epoch, cfg.epochs), desc="stage 1", unit="epoch", initial=state.epoch, total=cfg.epochs)
    arch = getattr(model, "arch", {})

    def save(epoch: int, done: int) -> None:
        save_state(cfg.out, arch, model, opt, sched, scaler, TrainState(epoch, done, state.log, epoch_start),
                   generators, as_record(cfg))
    with stop_requests() as stop:
        for epoch in bar:
            if state.step and state.loader_at_epoch_start is not None:  # the order of the epoch it stopped in
                loader.generator.set_state(state.loader_at_epoch_start)
            epoch_start = loader.generator.get_state() if loader.generator is not None else None
            model.train()
            total, correct, loss_sum = 0, 0, 0.0
            for i, (x, y) in enumerate(loader):
                if i < state.step:  # done before the run stopped
                    continue
                with place.autocast():
                    loss, n, right = step(place.to(x), place.to(y), gen)
                if not torch.isfinite(loss):
                    raise NonFiniteLoss(f"the loss is {float(loss)} at epoch {epoch + 1}, iteration {i + 1}; "
                                        "lower --lr (the last saved checkpoint is kept)")
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                total += n
                loss_sum += loss.item() * n
                correct += right
                if stop["stop"]:
                    save(epoch, i + 1)
                    raise Interrupted(f"stopped at epoch {epoch + 1}, iteration {i + 1}; the state is in {cfg.out}: "
                                      f"continue with --resume {cfg.out}")
            state.step = 0
            if total:
                state.log.append({"epoch": epoch + 1, "loss": loss_sum / total, acc_name: correct / total})
                bar.set_postfix(loss=f"{loss_sum / total:.3f}", acc=f"{correct / total:.3f}")
            if getattr(cfg, "save_every", 0) and (epoch + 1) % cfg.save_every == 0 and epoch + 1 < cfg.epochs:
                epoch_start = loader.generator.get_state() if loader.generator is not None else None
                save(epoch + 1, 0)
    return {"epochs": state.log, "seconds": round(time.perf_counter() - start, 1)}


def train_stage1(model: nn.Module, loader: DataLoader, cfg: TrainConfig) -> dict:
    """Joint training of backbone and head with instance-balanced sampling and plain cross-entropy."""
    def step(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, int, int]:
        logits = model(augment(x, cfg.shift, cfg.hflip, gen))
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
    log, start = [], time.perf_counter()
    bar = tqdm(range(cfg.epochs), desc=f"stage 2 ({cfg.method})", unit="epoch")
    for epoch in bar:
        loss_sum, total = 0.0, 0
        for feat, y in epoch_batches():
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
