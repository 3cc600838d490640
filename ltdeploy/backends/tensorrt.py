"""TensorRT backend (a GPU and the `tensorrt` package are needed; arrives with the GPU issue)."""
from __future__ import annotations

from ltdeploy.errors import EngineError


class TensorRTBackend:
    """Placeholder that refuses clearly until the TensorRT runtime lands."""

    def __init__(self, path: str, device: str = "cuda", threads: int = 0) -> None:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            raise EngineError(f"{path}: TensorRT plans need the `tensorrt` package and an NVIDIA GPU; "
                              "install 'ltdeploy[gpu]' on a GPU machine, or use the .onnx engine") from None
        raise EngineError(f"{path}: the TensorRT backend is not available in this ltdeploy yet; "
                          "use the .onnx engine")
