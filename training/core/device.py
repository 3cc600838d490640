"""Where and in what precision training runs: the device (`--device auto|cpu|cuda[:N]`), mixed precision
(`--amp bf16|fp16|off` through torch.autocast, with a GradScaler for fp16) and the memory format
(`--channels-last`). Every task's loops use this one placement; checkpoints stay device-free."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from ltdeploy.errors import LtDeployError

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class DeviceError(LtDeployError):
    """The device asked for is not there, or does not take the precision asked for."""


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` → the first CUDA device when there is one, else the CPU; `cuda[:N]` must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"--device {name!r}: expected auto, cpu or cuda[:N]") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: this machine has no CUDA device (torch {torch.__version__}); "
                              "use --device cpu")
        if (device.index or 0) >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise DeviceError(f"--device {name!r}: expected auto, cpu or cuda[:N]")
    return device


@dataclass(frozen=True)
class Placement:
    """A training run's device, autocast dtype and memory format."""

    device: torch.device
    amp: str = "off"
    channels_last: bool = False

    @classmethod
    def from_config(cls, cfg) -> "Placement":
        """The placement a config asks for (configs without these settings train on the CPU in fp32)."""
        amp = getattr(cfg, "amp", "off") or "off"
        if amp not in AMP_DTYPES:
            raise DeviceError(f"--amp {amp!r}: choose from {', '.join(AMP_DTYPES)}")
        return cls(resolve_device(getattr(cfg, "device", "cpu") or "cpu"), amp, bool(getattr(cfg, "channels_last", False)))

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass's autocast region (a no-op with --amp off)."""
        if AMP_DTYPES[self.amp] is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.amp])

    def scaler(self) -> torch.amp.GradScaler:
        """Loss scaling, on for fp16 only (bf16 keeps fp32's range)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model on this device, channels-last when asked."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    @property
    def pin_memory(self) -> bool:
        """Loaders pin their batches when they go to a GPU (copies then overlap with compute)."""
        return self.device.type == "cuda"

    def to(self, batch):
        """A batch (tensor, or lists / tuples / dicts of them) on this device, copied without blocking."""
        if isinstance(batch, torch.Tensor):
            moved = batch.to(self.device, non_blocking=True)
            return moved.contiguous(memory_format=torch.channels_last) if self.channels_last and moved.dim() == 4 \
                else moved
        if isinstance(batch, dict):
            return {k: self.to(v) for k, v in batch.items()}
        if isinstance(batch, (list, tuple)):
            return type(batch)(self.to(v) for v in batch)
        return batch


def module_device(model: nn.Module) -> torch.device:
    """The device a model's parameters are on (the CPU for a model without any)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict on the CPU, so a GPU-trained checkpoint loads and exports anywhere."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}
