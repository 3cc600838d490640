"""Backend registry: engine file suffix → backend class. Backends import their runtime lazily."""
from __future__ import annotations

import os

from ltdeploy.backends.base import Backend
from ltdeploy.errors import EngineError

SUFFIXES = {".onnx": "onnxruntime", ".trt": "tensorrt", ".engine": "tensorrt", ".plan": "tensorrt"}


def load_backend(path: str, device: str = "auto", threads: int = 0, spinning: bool = True) -> Backend:
    """Open an engine by its suffix: .onnx → ONNX Runtime (device auto = cpu, or cuda / tensorrt providers);
    .trt / .engine / .plan → TensorRT (device auto = cuda, or cuda:N)."""
    suffix = os.path.splitext(path)[1].lower()
    kind = SUFFIXES.get(suffix)
    if kind is None:
        raise EngineError(f"{path}: unknown engine kind {suffix or '(no suffix)'!r}; expected one of "
                          f"{', '.join(SUFFIXES)}")
    if not os.path.exists(path):
        raise EngineError(f"{path}: no such engine file")
    if kind == "onnxruntime":
        from ltdeploy.backends.onnxruntime import OnnxRuntimeBackend
        return OnnxRuntimeBackend(path, device="cpu" if device == "auto" else device, threads=threads,
                                  spinning=spinning)
    if device in ("cpu", "tensorrt"):
        raise EngineError(f"{path}: a TensorRT plan runs on the GPU (--device cuda); device {device!r} "
                          "applies to .onnx engines")
    from ltdeploy.backends.tensorrt import TensorRTBackend
    return TensorRTBackend(path, device=device, threads=threads)


__all__ = ["Backend", "SUFFIXES", "load_backend"]
