"""Typed, frozen run settings for training: what the command line gives, with each task's defaults filled in.

Library code reads these instead of an argparse Namespace; a setting that changes during a run (stage 2
raising its epochs to reach --min-steps) makes a new config with `dataclasses.replace`.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class CommonConfig:
    """Settings of both stages: data, optimiser, augmentation, and the detection loop's extras."""

    out: str = ""
    data: str | None = None
    train_ann: str | None = None
    val_ann: str | None = None
    images: str | None = None
    batch_size: int = 64
    lr: float = 0.1
    wd: float = 5e-4
    epochs: int = 30
    seed: int = 0
    workers: int = 2
    shift: int = 2
    hflip: bool = False
    rfs: float = 0.0
    warmup: int = 100
    clip: float = 10.0
    no_val: bool = False
    device: str = "auto"  # auto | cpu | cuda[:N]
    amp: str = "off"  # off | bf16 | fp16
    channels_last: bool = False
    sync_bn: bool = False
    save_every: int = 0  # epochs between resumable states written to --out (0: none)
    resume: str | None = None  # a resumable state to continue from
    recipe: str | None = None  # the preset these settings started from (training/recipes)
    # training augmentation, torchvision.transforms.v2 classes and their arguments ({"name": ..., **kwargs});
    # set by recipes, built by training/core/transforms.py
    transforms: tuple = ()


@dataclass(frozen=True)
class Stage1Config(CommonConfig):
    """Stage 1: the model to build and its eval preprocessing."""

    backbone: str = ""
    head: str = "linear"
    pretrained: bool = False
    freeze_backbone: bool = False
    input_size: int | None = None
    resize_short: int | None = None
    interpolation: str | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    many: int | None = None
    few: int | None = None
    min_size: int | None = None
    max_size: int | None = None
    masks: bool = False
    pcb: bool = False
    passes: int | None = None
    pcb_start: int | None = None
    detections_per_image: int = 300
    candidates_per_class: int | None = None
    candidates: int | None = None
    loss_log: str | None = None
    weights: str | None = None  # a local weights file (never recorded in the architecture)
    classes: str | None = None  # import: the weights' class names, one a line, in their output order


@dataclass(frozen=True)
class ImportConfig(Stage1Config):
    """`train.py import`: an already-trained model (`backbone` is its --arch, `weights` its file) as stage 1."""


@dataclass(frozen=True)
class Stage2Config(CommonConfig):
    """Stage 2: the stage-1 checkpoint and the calibration method."""

    checkpoint: str = ""
    method: str = "disalign"
    rho: float = 1.2
    min_steps: int = 1000
    augment: bool = False
    no_cache: bool = False
    tau: float = 1.0
    select: str | None = None  # --method auto: the val score that chooses (None: the task's first)


TrainConfig = Stage1Config | Stage2Config  # ImportConfig is a Stage1Config


@dataclass(frozen=True)
class TaskDefaults:
    """A task's defaults where the command line leaves a setting out."""

    batch_size: int = 64
    lr: float = 0.1
    wd: float = 5e-4
    stage1_epochs: int = 30
    stage2_epochs: int = 10
    rho: float = 1.2


def given_settings(args: argparse.Namespace) -> dict:
    """The settings the command line gave (every flag parses to None when left out)."""
    cls = {"stage1": Stage1Config, "import": ImportConfig}.get(args.stage, Stage2Config)
    return {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None}


def config_from_args(args: argparse.Namespace, defaults: TaskDefaults, recipe: dict | None = None) -> TrainConfig:
    """The parsed command line as a typed config: the command line first, then the recipe's settings, then the
    task's defaults, then the config's own."""
    cls = {"stage1": Stage1Config, "import": ImportConfig}.get(args.stage, Stage2Config)
    epochs = defaults.stage2_epochs if cls is Stage2Config else defaults.stage1_epochs
    filled = {"batch_size": defaults.batch_size, "lr": defaults.lr, "wd": defaults.wd, "epochs": epochs,
              "rho": defaults.rho}
    values = {k: v for k, v in filled.items() if k in {f.name for f in fields(cls)}}
    values.update(recipe or {})
    values.update({k: v for k, v in given_settings(args).items() if not (k in ("epochs", "batch_size") and v == 0)})
    for key in ("mean", "std", "transforms"):
        if values.get(key) is not None:
            values[key] = tuple(values[key])
    return cls(**values)


def as_record(cfg: TrainConfig) -> dict:
    """The config as plain data, for the checkpoint's training record."""
    stage = "import" if isinstance(cfg, ImportConfig) else "stage1" if isinstance(cfg, Stage1Config) else "stage2"
    return {"stage": stage, **dataclasses.asdict(cfg)}
