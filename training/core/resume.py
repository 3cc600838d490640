"""Resumable runs: the training state `--save-every K` writes to `--out` (atomically, every K epochs, and when
the run is stopped by Ctrl-C or SIGTERM) and `--resume` continues from. It holds what makes the continued run
end with the same weights as an uninterrupted one: model, optimizer, scheduler, scaler, the position (epoch and
iteration) and every random generator's state (the loader's order at the epoch's start, augmentation, torch)."""
from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch

from ltdeploy.errors import LtDeployError
from ltdeploy.files import atomic_path
from training.core.device import cpu_state

FORMAT = "ltdeploy.resume/1"


class Interrupted(LtDeployError):
    """The run was stopped (Ctrl-C, SIGTERM) after writing a resumable state."""


class NonFiniteLoss(LtDeployError):
    """The loss became NaN or infinite; the last saved checkpoint is kept as it was."""


@dataclass
class TrainState:
    """Where a run stands: the next epoch and the iterations of it already done, the log so far, the
    loader's generator state at that epoch's start and what the task decided then (detection: PCB on)."""

    epoch: int = 0
    step: int = 0
    log: list = field(default_factory=list)
    loader_at_epoch_start: torch.Tensor | None = None
    epoch_decisions: dict | None = None


def random_states(generators: dict[str, torch.Generator]) -> dict[str, torch.Tensor]:
    """This process's random state: its named generators and torch's global one."""
    return {**{k: g.get_state() for k, g in generators.items()}, "torch": torch.get_rng_state()}


def save_state(path: str, arch: dict, model: torch.nn.Module, opt, sched, scaler, state: TrainState,
               rank_states: list[dict[str, torch.Tensor]], record: dict) -> None:
    """Write the resumable state of a run to `path` (atomically); `rank_states` holds every process's
    `random_states`, in rank order."""
    payload = {"format": FORMAT, "arch": arch, "model": cpu_state(model), "optimizer": opt.state_dict(),
               "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "epoch": state.epoch,
               "step": state.step, "log": state.log, "loader_at_epoch_start": state.loader_at_epoch_start,
               "epoch_decisions": state.epoch_decisions,
               "random": rank_states, "args": record}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def is_state_file(path: str) -> bool:
    """True for a file `save_state` wrote (a run that has not finished)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True).get("format") == FORMAT
    except Exception:  # not a torch file at all
        return False


def load_state(path: str, model: torch.nn.Module, opt, sched, scaler, generators: dict[str, torch.Generator],
               rank: int = 0, world_size: int = 1) -> TrainState:
    """Restore a run from `path` into the freshly built objects (this rank's random state); returns where it
    stood."""
    if not os.path.isfile(path):
        raise LtDeployError(f"--resume {path}: no such file")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise LtDeployError(f"--resume {path}: not a resumable training state (a finished checkpoint is complete; "
                            "start stage 2 from it instead)")
    saved_by = len(payload["random"])
    if saved_by != world_size:
        raise LtDeployError(f"--resume {path}: saved by {saved_by} process(es); resume it with as many "
                            f"(torchrun --nproc_per_node), not {world_size}")
    model.load_state_dict(payload["model"])
    opt.load_state_dict(payload["optimizer"])
    sched.load_state_dict(payload["scheduler"])
    scaler.load_state_dict(payload["scaler"])
    mine = payload["random"][rank]
    for name, gen in generators.items():
        gen.set_state(mine[name])
    torch.set_rng_state(mine["torch"])
    return TrainState(payload["epoch"], payload["step"], payload["log"], payload["loader_at_epoch_start"],
                      payload.get("epoch_decisions"))


@contextmanager
def stop_requests() -> Iterator[dict]:
    """While inside, Ctrl-C and SIGTERM only ask the loop to stop (`flags['stop']`), so it can save first."""
    flags = {"stop": False}

    def ask(signum, frame) -> None:
        flags["stop"] = True
    previous = {s: signal.signal(s, ask) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flags
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
