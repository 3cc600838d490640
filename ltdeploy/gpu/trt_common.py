"""What the TensorRT builder and runtime share: the lazy import, the version, the plugin registry, and a
logger that keeps errors and writes to stderr (stdout carries `--json` results)."""
from __future__ import annotations

import importlib.util
import sys

from ltdeploy.errors import EngineError

INSTALL_HINT = "pip install 'ltdeploy[gpu-trt10]' or 'ltdeploy[gpu-trt11]' on a GPU machine, or use the .onnx engine"


def import_tensorrt(what: str):
    """`import tensorrt`, or a one-line error saying what needed it and how to get it."""
    try:
        import tensorrt
    except ImportError:
        partial = [m for m in ("tensorrt_lean", "tensorrt_dispatch") if importlib.util.find_spec(m)]
        if partial:
            raise EngineError(f"{what} needs the full `tensorrt` package; only {', '.join(partial)} is installed, "
                              "which has no builder or ONNX parser and runs only version-compatible plans: "
                              f"{INSTALL_HINT}") from None
        raise EngineError(f"{what} needs the `tensorrt` package (10.x or 11.x) and an NVIDIA GPU: "
                          f"{INSTALL_HINT}") from None
    major = tensorrt_major(tensorrt)
    if major not in (10, 11):
        raise EngineError(f"{what}: TensorRT {tensorrt.__version__} is installed; ltdeploy needs 10.x or 11.x")
    return tensorrt


def tensorrt_major(trt) -> int:
    """10 or 11 (the Python APIs differ in network flags and precision control)."""
    return int(trt.__version__.split(".")[0])


def register_plugins(trt, logger) -> None:
    """Register TensorRT's bundled plugins before parsing or deserialising: the detectors' RoiAlign
    becomes the ROIAlign_TRT plugin (Triton does this itself; a Python process must)."""
    if not trt.init_libnvinfer_plugins(logger, ""):
        raise EngineError(f"TensorRT's bundled plugins did not register ({logger.last_error()})")


def capturing_logger(trt, severity: str = "WARNING"):
    """A trt.ILogger that keeps error messages (deserialization and build failures only say why in the log)
    and prints messages up to `severity` on stderr."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.min = int(getattr(trt.ILogger.Severity, severity))

        def log(self, sev, msg: str) -> None:  # noqa: D102 (TensorRT's callback)
            # Severities count up from INTERNAL_ERROR (0) through ERROR, WARNING, INFO to VERBOSE.
            if int(sev) <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(msg.strip())
            if int(sev) <= self.min:
                print(f"[TensorRT] {msg.strip()}", file=sys.stderr)

        def last_error(self) -> str:
            return self.errors[-1].splitlines()[0][:300] if self.errors else "no reason logged"

    return Logger()
