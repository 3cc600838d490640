"""What the TensorRT builder and runtime share: the lazy import, the version, a logger that keeps errors."""
from __future__ import annotations

from ltdeploy.errors import EngineError


def import_tensorrt(what: str):
    """`import tensorrt`, or a one-line error saying what needed it and how to get it."""
    try:
        import tensorrt
    except ImportError:
        raise EngineError(f"{what} needs the `tensorrt` package (10.x or 11.x) and an NVIDIA GPU: "
                          "pip install 'ltdeploy[gpu]' on a GPU machine, or use the .onnx engine") from None
    major = tensorrt_major(tensorrt)
    if major < 10:
        raise EngineError(f"{what}: TensorRT {tensorrt.__version__} is installed; ltdeploy needs 10.x or 11.x")
    return tensorrt


def tensorrt_major(trt) -> int:
    """10 or 11 (the Python APIs differ in network flags and precision control)."""
    return int(trt.__version__.split(".")[0])


def capturing_logger(trt, severity: str = "WARNING"):
    """A trt.ILogger that keeps error messages (deserialization and build failures only say why in the log)."""

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
                print(f"[TensorRT] {msg.strip()}")

        def last_error(self) -> str:
            return self.errors[-1].splitlines()[0][:300] if self.errors else "no reason logged"

    return Logger()
