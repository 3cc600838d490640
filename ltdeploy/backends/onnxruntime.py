"""ONNX Runtime backend: the default, runs anywhere."""
from __future__ import annotations

import os

import numpy as np

from ltdeploy.backends.base import Backend
from ltdeploy.errors import EngineError, InputShapeError, MetadataError
from ltdeploy.metadata import description_from_metadata


def _import_ort():
    try:
        import onnxruntime
    except ImportError:
        raise EngineError("ONNX Runtime is not installed: pip install 'ltdeploy[cpu]' "
                          "(or 'ltdeploy[gpu-trt10]' / '[gpu-trt11]', never both)") from None
    return onnxruntime


PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider"}


def providers_for(device: str, path: str) -> list:
    """ONNX Runtime's provider list for `--device`: the wanted provider first, then its fallbacks.

    The TensorRT provider caches its engines beside the model (`<model>.ort-trt/`), so a restart does
    not rebuild them."""
    if device not in PROVIDERS:
        raise EngineError(f"device {device!r} is not supported by ONNX Runtime; use {', '.join(PROVIDERS)}")
    if device == "cpu":
        return ["CPUExecutionProvider"]
    chain: list = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "tensorrt":
        cache = os.path.splitext(path)[0] + ".ort-trt"
        chain.insert(0, ("TensorrtExecutionProvider", {"trt_engine_cache_enable": True,
                                                       "trt_engine_cache_path": cache,
                                                       "trt_timing_cache_enable": True,
                                                       "trt_timing_cache_path": cache}))
    return chain


def check_provider(path: str, requested: str, used: list[str]) -> None:
    """ONNX Runtime falls back to the CPU with only a log line when a GPU provider cannot load:
    refuse, naming what it runs instead."""
    if used and used[0] == requested:
        return
    raise EngineError(f"{path}: {requested} was requested but ONNX Runtime runs {', '.join(used)}; install "
                      "onnxruntime-gpu (never beside onnxruntime) with a matching CUDA"
                      + (" and TensorRT" if requested == "TensorrtExecutionProvider" else ""))


class OnnxRuntimeBackend(Backend):
    """Runs an ONNX file exported by ltdeploy, whose description sits in the ONNX metadata."""

    def __init__(self, path: str, device: str = "cpu", threads: int = 0, spinning: bool = True,
                 fused: bool = True) -> None:
        """`fused` False runs the graph as written, no graph optimisation: a QDQ graph's Quantize / Dequantize
        pairs around float operators, the exact int8 arithmetic without any one CPU kernel's shortcuts."""
        ort = _import_ort()
        self.path = path
        if not os.path.isfile(path):
            raise EngineError(f"{path}: no such engine file")
        wanted = providers_for(device, path)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        if not fused:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if not spinning:
            # Idle pool threads otherwise spin for a while after each run, stealing cores from whatever
            # runs next (another session in a benchmark, the decoding threads in predict).
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(path, sess_options=opts, providers=wanted)
        except Exception as exc:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise EngineError(f"{path}: not a loadable ONNX model ({reason})") from None
        self.requested = wanted[0] if isinstance(wanted[0], str) else wanted[0][0]
        check_provider(path, self.requested, self.session.get_providers())
        self.description = description_from_metadata(self.session.get_modelmeta().custom_metadata_map, path)
        self._inputs = {i.name: i for i in self.session.get_inputs()}
        self.input_names = list(self._inputs)
        self.output_names = [o.name for o in self.session.get_outputs()]
        if self.description.input_name not in self._inputs:
            raise MetadataError(f"{path}: description names input {self.description.input_name!r}, "
                                f"the graph has {self.input_names}")

    @property
    def provider(self) -> str:
        """The first provider ONNX Runtime actually uses."""
        return self.session.get_providers()[0]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch through the session, checking shapes against the graph first."""
        for name, arr in inputs.items():
            spec = self._inputs.get(name)
            if spec is None:
                raise InputShapeError(f"{self.path}: no input named {name!r}; inputs are {self.input_names}")
            dims = spec.shape
            if arr.ndim != len(dims) or any(isinstance(d, int) and d != s for d, s in zip(dims, arr.shape)):
                raise InputShapeError(f"{self.path}: input {name!r} expects shape {dims}, got {list(arr.shape)}")
        outs = self.session.run(self.output_names, inputs)
        return dict(zip(self.output_names, outs))
