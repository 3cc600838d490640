"""Models from the well-kept libraries (timm, torchvision), named by spec (`timm:NAME`, `tv:NAME`): what every
task shares of them, the library's own download of pretrained weights and the versions a checkpoint records."""
from __future__ import annotations

import importlib
import os
from typing import Callable

from torch import nn

from ltdeploy.errors import ModelError


def split_spec(spec: str) -> tuple[str, str]:
    """('timm' | 'tv', NAME) of a library spec."""
    lib, sep, name = spec.partition(":")
    if not sep or lib not in ("timm", "tv") or not name:
        raise ModelError(f"{spec!r}: expected timm:NAME or tv:NAME")
    return lib, name


def download(what: str, fetch: Callable[[], nn.Module]) -> nn.Module:
    """A library model built with its own download of pretrained weights; one line when that cannot happen."""
    if os.environ.get("LTDEPLOY_OFFLINE") == "1":
        raise ModelError(f"{what}: --pretrained downloads weights, and this machine is offline; pass --weights FILE")
    try:
        return fetch()
    except Exception as exc:  # hub and urllib errors have no common base
        raise ModelError(f"{what}: could not download the pretrained weights ({type(exc).__name__}); "
                         "offline, pass --weights FILE") from None


def library_versions(spec: str) -> dict:
    """The version of the library a spec builds from (recorded in the checkpoint's arch)."""
    if not spec.startswith(("timm:", "tv:")):
        return {}
    lib = split_spec(spec)[0]
    module = importlib.import_module("timm" if lib == "timm" else "torchvision")
    return {lib: module.__version__}


