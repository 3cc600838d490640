"""Weights from a user's file: a state dict, or a checkpoint holding one under `state_dict` / `model`, saved by
torch.save or as safetensors; DataParallel / DDP `module.` prefixes are stripped. The path is never recorded
in an architecture (a checkpoint rebuilds its model without it); provenance keeps its name and sha256."""
from __future__ import annotations

import os

import torch
from torch import nn

from ltdeploy.errors import ModelError
from ltdeploy.files import file_sha256

WRAPPER_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "net")


class WeightsError(ModelError):
    """A weights file is missing, unreadable, or does not fit the model."""


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, unwrapped and without `module.` prefixes."""
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: no such weights file")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file
            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a file that is not a checkpoint
        raise WeightsError(f"{path}: not a readable weights file ({type(exc).__name__}); expected a state dict "
                           "saved with torch.save, or .safetensors") from None
    if isinstance(state, nn.Module):
        state = state.state_dict()
    while isinstance(state, dict) and not _is_state(state):
        inner = next((state[k] for k in WRAPPER_KEYS if isinstance(state.get(k), dict)), None)
        if inner is None:
            raise WeightsError(f"{path}: holds no state dict (top-level keys: {', '.join(map(str, list(state)[:6]))})")
        state = inner
    if not isinstance(state, dict) or not state:
        raise WeightsError(f"{path}: holds no tensors")
    return {_strip(k): v for k, v in state.items()}


def _is_state(d: dict) -> bool:
    return bool(d) and all(isinstance(v, torch.Tensor) for v in d.values())


def _strip(key: str) -> str:
    for prefix in ("module.", "_orig_mod."):
        while key.startswith(prefix):
            key = key[len(prefix):]
    return key


def load_into(module: nn.Module, state: dict[str, torch.Tensor], source: str, ignore: set[str] = frozenset()) -> int:
    """Load `state` into `module`: every parameter and buffer of the module must be there with its shape; keys
    the module lacks (a classifier of another width, say) are counted and skipped. Returns how many were."""
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise WeightsError(f"{source}: {len(missing)} of the model's {len(own)} tensors are missing, e.g. "
                           f"{', '.join(missing[:3])}; is it this architecture's file?")
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape and k not in ignore]
    if wrong:
        raise WeightsError(f"{source}: {len(wrong)} tensors have other shapes than the model's, e.g. {wrong[0]}")
    module.load_state_dict({k: state[k] for k in own if k in state}, strict=False)
    # BatchNorm's step counter has no use in a frozen BatchNorm, which lacks it
    return sum(1 for k in state if k not in own and not k.endswith("num_batches_tracked"))


def weights_record(path: str) -> dict:
    """What provenance says of a weights file: its name and sha256 (never the path to rebuild from)."""
    return {"file": os.path.basename(path), "sha256": file_sha256(path)}
