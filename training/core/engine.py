"""The one stage-1 training loop every task runs: SGD with a cosine schedule on the run's device and precision,
in one process or several under torchrun, resumable, stopped cleanly by Ctrl-C / SIGTERM or a non-finite loss.
A task brings only its step: step(net, x, y, gen) → (loss, targets covered, targets right)."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from training.config import TrainConfig, as_record
from training.core.bad_images import BadImageLog
from training.core.device import Placement
from training.core.distributed import (
    any_rank,
    gather,
    init_distributed,
    rank_device,
    reduce_sum,
    set_epoch,
    shard_loader,
    wrap,
)
from training.core.resume import (
    Interrupted,
    NonFiniteLoss,
    TrainState,
    load_state,
    random_states,
    save_state,
    stop_requests,
)

StepFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, int, int]]
RANK_SEED_STRIDE = 7919  # rank r draws its augmentation from seed + r * stride (rank 0: the one-process stream)


def cosine_sgd(params: list[nn.Parameter], lr: float, wd: float, steps: int) -> tuple:
    """SGD (momentum 0.9) with a per-step cosine schedule from `lr` down to zero."""
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    return opt, sched


@dataclass(frozen=True)
class LoopParts:
    """What a task changes in the shared loop; the defaults are classification's and segmentation's."""

    desc: str = "stage 1"
    optimizer: Callable[[list, int], tuple] | None = None  # (params, total steps) → (opt, sched); None: cosine_sgd
    clip: float | None = None  # gradient-norm clip
    sharded: bool = False  # the loader already gives each rank its share (its own sampler)
    find_unused: bool = False  # DDP: parameters a step may leave without gradient (detection's heads)
    resumable: bool = True  # Ctrl-C / SIGTERM write a resumable state (False: stop, nothing written)
    # before each epoch: (epoch, what was decided at its start when a run resumes mid-epoch, else None)
    # → what it decided (kept in the resumable state, so a resumed epoch runs as it began)
    on_epoch: Callable[[int, dict | None], dict | None] | None = None
    epoch_record: Callable[[int, float, float, float], dict] | None = None  # (epoch, loss sum, n, right) → log
    extra_history: Callable[[], dict] | None = None


class Stage1Run:
    """One run of `train_epochs`: its placement, process group, optimiser and random state."""

    def __init__(self, model: nn.Module, loader: DataLoader, cfg: TrainConfig, step: StepFn, acc_name: str,
                 parts: LoopParts) -> None:
        self.parts = parts
        place = Placement.from_config(cfg)
        self.world = init_distributed(place.device)
        self.place = dataclasses.replace(place, device=rank_device(place.device, self.world))
        self.model, self.cfg, self.step, self.acc_name = self.place.prepare(model), cfg, step, acc_name
        self.loader = loader if parts.sharded else shard_loader(loader, self.world, cfg.seed)
        self.params = [p for p in model.parameters() if p.requires_grad]
        steps = cfg.epochs * len(self.loader)
        self.opt, self.sched = parts.optimizer(self.params, steps) if parts.optimizer else \
            cosine_sgd(self.params, cfg.lr, cfg.wd, steps)
        self.scaler = self.place.scaler()
        self.gen = torch.Generator().manual_seed(cfg.seed + RANK_SEED_STRIDE * self.world.rank)
        self.generators = {"augment": self.gen, **({"loader": self.loader.generator}
                                                   if self.loader.generator is not None else {})}
        self.state = load_state(cfg.resume, model, self.opt, self.sched, self.scaler, self.generators,
                                self.world.rank, self.world.size) if getattr(cfg, "resume", None) else TrainState()
        self.net = wrap(model, self.world, getattr(cfg, "sync_bn", False), parts.find_unused)  # after resume
        self.bad = BadImageLog(getattr(loader, "bad_images", 0) if self.world.main else 0)

    def _loader_state(self) -> torch.Tensor | None:
        return self.loader.generator.get_state() if self.loader.generator is not None else None

    def save(self, epoch: int, done: int, loader_at_epoch_start: torch.Tensor | None,
             decisions: dict | None = None) -> None:
        """Every rank's random state to rank 0, which writes the resumable state to --out."""
        ranks = gather(random_states(self.generators), self.world)
        if self.world.main:
            save_state(self.cfg.out, getattr(self.model, "arch", {}), self.model, self.opt, self.sched, self.scaler,
                       TrainState(epoch, done, self.state.log, loader_at_epoch_start, decisions), ranks,
                       as_record(self.cfg))

    def stop_at(self, epoch: int, done: int, loader_at_epoch_start: torch.Tensor | None,
                decisions: dict | None) -> None:
        """Ctrl-C or SIGTERM: write the resumable state (where the run resumes) and stop in one line."""
        where = f"stopped at epoch {epoch + 1}, iteration {done}"
        if not self.parts.resumable:
            raise Interrupted(f"{where}; nothing written")
        self.save(epoch, done, loader_at_epoch_start, decisions)
        raise Interrupted(f"{where}; the state is in {self.cfg.out}: continue with --resume {self.cfg.out}")

    def epoch(self, epoch: int, stop: dict) -> tuple[float, float, float]:
        """One epoch (the rest of it after a mid-epoch resume); returns the summed loss, targets and right."""
        set_epoch(self.loader, epoch)
        decided, self.state.epoch_decisions = self.state.epoch_decisions, None
        decisions = self.parts.on_epoch(epoch, decided if self.state.step else None) if self.parts.on_epoch else None
        if self.state.loader_at_epoch_start is not None:  # resumed: this epoch's order as it was first drawn
            self.loader.generator.set_state(self.state.loader_at_epoch_start)
            self.state.loader_at_epoch_start = None
        at_start = self._loader_state()
        self.net.train()
        total, correct, loss_sum = 0, 0, 0.0
        for i, batch in enumerate(self.loader):
            if i < self.state.step:  # done before the run stopped
                continue
            x, y = batch[:2]
            if len(batch) > 2:  # a loader that skips unreadable images (training/core/bad_images.py)
                self.bad.add(batch[2])
            stopping, empty = reduce_sum([float(stop["stop"]), float(x is None or len(x) == 0)], self.world)
            if stopping:
                self.stop_at(epoch, i, at_start, decisions)
            if empty:  # every image of some rank's batch was unreadable: every rank skips the step together
                continue
            with self.place.autocast():
                loss, n, right = self.step(self.net, self.place.to(x), self.place.to(y), self.gen)
            if any_rank(not torch.isfinite(loss), self.world):
                raise NonFiniteLoss(f"the loss is not finite at epoch {epoch + 1}, iteration {i + 1}; lower --lr "
                                    "(the last saved checkpoint is kept)")
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.parts.clip:
                self.scaler.unscale_(self.opt)
                torch.nn.utils.clip_grad_norm_(self.params, self.parts.clip)
            self.scaler.step(self.opt)
            self.scaler.update()
            self.sched.step()
            total += n
            loss_sum += loss.item() * n
            correct += right
        self.state.step = 0
        return tuple(reduce_sum([loss_sum, float(total), float(correct)], self.world))

    def run(self) -> dict:
        """Every remaining epoch; the per-epoch log (means over all ranks) and the wall time."""
        cfg, state, start = self.cfg, self.state, time.perf_counter()
        bar = tqdm(range(state.epoch, cfg.epochs), desc=self.parts.desc, unit="epoch", initial=state.epoch,
                   total=cfg.epochs, disable=not self.world.main)
        with stop_requests() as stop:
            for epoch in bar:
                loss_sum, total, correct = self.epoch(epoch, stop)
                if total:
                    state.log.append(self.parts.epoch_record(epoch, loss_sum, total, correct) if self.parts.epoch_record
                                     else {"epoch": epoch + 1, "loss": loss_sum / total, self.acc_name: correct / total})
                    bar.set_postfix(loss=f"{loss_sum / total:.3f}", acc=f"{correct / total:.3f}")
                if getattr(cfg, "save_every", 0) and (epoch + 1) % cfg.save_every == 0 and epoch + 1 < cfg.epochs:
                    self.save(epoch + 1, 0, self._loader_state())
        history = {"epochs": state.log, "seconds": round(time.perf_counter() - start, 1),
                   "world_size": self.world.size, "bad_images": int(reduce_sum([self.bad.count], self.world)[0])}
        history.update(self.parts.extra_history() if self.parts.extra_history else {})
        if self.world.size > 1:  # DistributedDataParallel keeps the replicas' weights identical: check it did
            sums = gather(float(sum(p.detach().double().sum() for p in self.model.parameters())), self.world)
            history["replicas_agree"] = len(set(sums)) == 1
        return history


def train_epochs(model: nn.Module, loader: DataLoader, cfg: TrainConfig, step: StepFn,
                 acc_name: str = "train_acc", parts: LoopParts = LoopParts()) -> dict:
    """SGD with a cosine schedule over `cfg.epochs` epochs of `loader` on the run's device and precision, in
    every process torchrun started; step(net, x, y, gen) gives the batch's loss, targets covered and right.

    Resumable: every `cfg.save_every` epochs, and when Ctrl-C or SIGTERM stops the run, the training state goes
    to `cfg.out`; `cfg.resume` continues from one. A non-finite loss stops the run, naming the iteration."""
    return Stage1Run(model, loader, cfg, step, acc_name, parts).run()
