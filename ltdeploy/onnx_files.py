"""Reading ONNX graphs (the `onnx` package: the build and quantize extras) with one-line errors."""
from __future__ import annotations

import os

from ltdeploy.errors import EngineError


def import_onnx(extra: str = "build"):
    """The onnx module, or an EngineError naming the extra that brings it."""
    try:
        import onnx
    except ImportError:
        raise EngineError(f"this needs the onnx package: pip install 'ltdeploy[{extra}]'") from None
    return onnx


def load_onnx(path: str, extra: str = "build", weights: bool = True):
    """The ModelProto of an ONNX file (without external weights unless `weights`); EngineError for a missing or
    unreadable file."""
    onnx = import_onnx(extra)
    if not os.path.isfile(path):
        raise EngineError(f"{path}: no such ONNX file")
    try:
        return onnx.load(path, load_external_data=weights)
    except Exception as exc:  # onnx raises DecodeError / OSError variants
        raise EngineError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
