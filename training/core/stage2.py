"""Stage 2, written once for every task: refuse a calibrated checkpoint, freeze stage 1, build and fit the
calibrator, describe the result and save it. Each task supplies only what differs, as a `Stage2Job`."""
from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch

from training.config import Stage2Config, as_record
from training.core.checkpoint import Checkpoint, file_sha256, payload_task, read_payload, restore, save_checkpoint
from training.core.device import Placement
from training.core.provenance import provenance

if TYPE_CHECKING:
    from ltdeploy.metadata import ModelDescription
    from training.core.task import Task
    from training.core.two_stage import TwoStageModel


@dataclass
class Stage2Job:
    """What one task brings to stage 2, its data already read, stage 1 frozen and the calibrator built.

    steps_per_epoch: batches per epoch when the task's epochs are raised to reach --min-steps (None: the
    task runs the epochs it is given). fit(cfg) trains the calibrator and returns its log; validate(model,
    desc, name) scores the result on val (None: skipped); calibration(cfg, info) is what the description
    records of the fit.
    """

    steps_per_epoch: int | None
    banner: Callable[[Stage2Config], str]
    fit: Callable[[Stage2Config], dict]
    validate: Callable[["TwoStageModel", "ModelDescription", str], dict | None]
    calibration: Callable[[Stage2Config, dict], dict]
    class_counts: list[int] | None = None  # the counts the fit re-weighted by (None: keep stage 1's)
    provenance: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)


def min_step_epochs(cfg: Stage2Config, steps_per_epoch: int | None) -> Stage2Config:
    """Small sets give few steps per epoch: at least --min-steps iterations (recorded in the checkpoint)."""
    if steps_per_epoch is None:
        return cfg
    return dataclasses.replace(cfg, epochs=max(cfg.epochs, -(-cfg.min_steps // steps_per_epoch)))


@dataclass
class Fitted:
    """One fitted calibration: the model, its new description, its training record and its val scores."""

    cfg: Stage2Config
    model: "TwoStageModel"
    description: "ModelDescription"
    history: dict
    seconds: float


def run_stage2(task: "Task", cfg: Stage2Config) -> int:
    """Freeze a stage-1 checkpoint of the task, fit a calibration method on it and save the result (`auto`,
    which fits every candidate, is `training.core.auto.run_auto`)."""
    if cfg.method not in task.methods:
        print(f"error: {task.name} calibrates with {', '.join(task.methods)}, not {cfg.method}", file=sys.stderr)
        return 2
    fitted = fit_stage2(task, cfg)
    if isinstance(fitted, int):
        return fitted
    save_stage2(fitted)
    return 0


def fit_stage2(task: "Task", cfg: Stage2Config) -> Fitted | int:
    """Fit `cfg.method` on a fresh copy of the stage-1 checkpoint and score it on val; 2 for a calibrated one."""
    torch.manual_seed(cfg.seed)
    try:
        payload = read_payload(cfg.checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if payload_task(payload) != task.name:
        print(f"error: {cfg.checkpoint} is a {payload_task(payload)} model but {cfg.data} is a {task.name} dataset",
              file=sys.stderr)
        return 2
    ck: Checkpoint = restore(payload, cfg.checkpoint, task)
    if ck.arch.get("calibrator"):
        print(f"error: {cfg.checkpoint} is already calibrated ({ck.arch['calibrator']}); give the stage-1 "
              "checkpoint", file=sys.stderr)
        return 2
    device = Placement.from_config(cfg).device
    ck.model.to(device)  # stage 1 on the device: the feature cache is computed there
    job = task.stage2_job(ck, cfg)
    ck.model.to(device)  # and the calibrator the job built
    cfg = min_step_epochs(cfg, job.steps_per_epoch)
    banner = job.banner(cfg)
    if banner:
        print(banner)
    model, desc = ck.model, ck.description
    start = time.perf_counter()
    model.train()
    info = job.fit(cfg)
    model.eval()
    seconds = round(time.perf_counter() - start, 2)
    new_desc = dataclasses.replace(desc, class_counts=job.class_counts or desc.class_counts,
                                   calibration=job.calibration(cfg, info),
                                   provenance=provenance(cfg, "stage2", stage1=desc.provenance, **job.provenance))
    history = {"stage2": {**info, "seconds_total": seconds}, **job.history, "args": as_record(cfg)}
    history["val"] = job.validate(model, new_desc, cfg.method)
    return Fitted(cfg, model, new_desc, history, seconds)


def save_stage2(fitted: Fitted) -> None:
    """Write the fitted model's checkpoint."""
    sha = save_checkpoint(fitted.cfg.out, fitted.model, fitted.description, fitted.history)
    print(f"wrote {fitted.cfg.out} (sha256 {sha[:12]}); stage 2 took {fitted.seconds} s")


def stage1_sha(cfg: Stage2Config) -> str:
    """The sha256 of the stage-1 checkpoint being calibrated."""
    return file_sha256(cfg.checkpoint)
