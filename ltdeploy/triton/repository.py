"""`ltdeploy export-triton`: an engine → a Triton model repository that takes encoded images and returns
ltdeploy's JSON.

Two layouts:
- `native` (default): `<name>_engine` runs the graph on Triton's own backend (platform `onnxruntime_onnx`
  or `tensorrt_plan`, dynamic batching, instance groups) and `<name>` is a Python-backend model that
  decodes, preprocesses, calls the engine model through BLS and post-processes.
- `python`: one Python-backend model that runs the engine itself with ltdeploy's backends, for Triton
  builds that have only the Python backend (such as the server inside the nvidia-pytriton wheel).
Clients send `IMAGE` (bytes of an encoded image, shape [batch, 1]) to `<name>` and read `RESULT`
(one JSON document per image, as `ltdeploy predict --json` prints it).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass

from ltdeploy.backends import SUFFIXES
from ltdeploy.errors import EngineError, OutputError
from ltdeploy.gpu.plan import TensorSpec
from ltdeploy.metadata import ModelDescription
from ltdeploy.triton.model import DESCRIPTION_FILE, INPUT, OUTPUT

LAYOUTS = ("native", "python")
TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32",
                "uint8": "TYPE_UINT8", "int8": "TYPE_INT8", "bool": "TYPE_BOOL", "float64": "TYPE_FP64"}
ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
             "tensor(int32)": "int32", "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(bool)": "bool",
             "tensor(double)": "float64"}
UNBOUNDED = 1 << 30
MODEL_PY = ('"""Triton Python-backend entry point written by `ltdeploy export-triton`; '
            'the logic lives in ltdeploy.triton.model."""\n'
            "from ltdeploy.triton.model import TritonPythonModel  # noqa: F401\n")


@dataclass(frozen=True)
class EngineIO:
    """What the repository needs to know about an engine."""

    description: ModelDescription
    tensors: list[TensorSpec]
    platform: str  # onnxruntime_onnx | tensorrt_plan
    max_batch: int  # the most the engine takes (0: the batch dimension is fixed; UNBOUNDED: any)


def engine_io(path: str) -> EngineIO:
    """Read an engine's description and I/O tensors (ONNX via ONNX Runtime on the CPU, plans via <plan>.json)."""
    kind = SUFFIXES.get(os.path.splitext(path)[1].lower())
    if kind is None or not os.path.isfile(path):
        raise EngineError(f"{path}: expected an existing .onnx, .trt, .engine or .plan file")
    if kind == "tensorrt":
        from ltdeploy.gpu.plan import read_plan_description, read_plan_header
        read_plan_header(path)
        description, build = read_plan_description(path)
        return EngineIO(description, build.tensors, "tensorrt_plan", build.max_batch() if build.batch_dynamic() else 0)
    from ltdeploy.backends.onnxruntime import OnnxRuntimeBackend
    backend = OnnxRuntimeBackend(path, device="cpu")
    specs = [TensorSpec(t.name, mode, ORT_TYPES.get(t.type, t.type), [d if isinstance(d, int) else -1 for d in t.shape])
             for mode, ts in (("input", backend.session.get_inputs()), ("output", backend.session.get_outputs()))
             for t in ts]
    batch_dynamic = all(t.shape[0] == -1 for t in specs if t.mode == "input")
    return EngineIO(backend.description, specs, "onnxruntime_onnx", UNBOUNDED if batch_dynamic else 0)


def _tensor_block(specs: list[TensorSpec], batched: bool) -> str:
    rows = []
    for t in specs:
        if t.dtype not in TRITON_TYPES:
            raise EngineError(f"tensor {t.name!r} has dtype {t.dtype}, which this exporter does not map to Triton")
        dims = t.shape[1:] if batched else t.shape
        rows.append(f'  {{ name: "{t.name}", data_type: {TRITON_TYPES[t.dtype]}, dims: [ {", ".join(map(str, dims))} ] }}')
    return ",\n".join(rows)


def _parameters(params: dict[str, str]) -> str:
    rows = [f'  {{ key: "{k}", value: {{ string_value: "{v}" }} }}' for k, v in params.items()]
    return "parameters [\n" + ",\n".join(rows) + "\n]\n"


def _batching(max_batch: int, delay_us: int) -> str:
    preferred = [b for b in (4, 8, 16, 32) if b <= max_batch] or [max_batch]
    return (f"dynamic_batching {{\n  preferred_batch_size: [ {', '.join(map(str, preferred))} ]\n"
            f"  max_queue_delay_microseconds: {delay_us}\n}}\n")


def engine_config(name: str, io: EngineIO, max_batch: int, instances: int, kind: str, delay_us: int) -> str:
    """config.pbtxt of the engine model."""
    batched = io.max_batch > 0
    text = (f'name: "{name}"\nplatform: "{io.platform}"\nmax_batch_size: {max_batch if batched else 0}\n'
            f"input [\n{_tensor_block([t for t in io.tensors if t.mode == 'input'], batched)}\n]\n"
            f"output [\n{_tensor_block([t for t in io.tensors if t.mode == 'output'], batched)}\n]\n"
            f"instance_group [ {{ count: {instances}, kind: {kind} }} ]\n")
    return text + (_batching(max_batch, delay_us) if batched else "")


def python_config(name: str, max_batch: int, instances: int, kind: str, params: dict[str, str],
                  delay_us: int) -> str:
    """config.pbtxt of the Python-backend model (IMAGE bytes in, RESULT JSON out)."""
    return (f'name: "{name}"\nbackend: "python"\nmax_batch_size: {max_batch}\n'
            f'input [\n  {{ name: "{INPUT}", data_type: TYPE_STRING, dims: [ 1 ] }}\n]\n'
            f'output [\n  {{ name: "{OUTPUT}", data_type: TYPE_STRING, dims: [ 1 ] }}\n]\n'
            f"instance_group [ {{ count: {instances}, kind: {kind} }} ]\n"
            + _batching(max_batch, delay_us) + _parameters(params))


def model_name_for(engine: str) -> str:
    """A Triton-safe model name from the engine's file name."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", os.path.splitext(os.path.basename(engine))[0]) or "model"


def write_repository(engine: str, repo: str, name: str | None = None, max_batch: int = 8, instances: int = 1,
                     layout: str = "native", gpu: bool | None = None, topk: int = 5, score_threshold: float = 0.25,
                     max_detections: int = 100, delay_us: int = 500, overwrite: bool = False) -> list[str]:
    """Write the model(s) for `engine` into `repo`; returns the model names. All or nothing."""
    if layout not in LAYOUTS:
        raise EngineError(f"layout {layout!r}: choose {' or '.join(LAYOUTS)}")
    io = engine_io(engine)
    name = name or model_name_for(engine)
    plan = io.platform == "tensorrt_plan"
    gpu = plan if gpu is None else gpu
    if plan and not gpu:
        raise EngineError(f"{engine}: a TensorRT plan runs on KIND_GPU instances only")
    engine_batch = min(max_batch, io.max_batch) if io.max_batch else 0
    if plan and io.max_batch and max_batch > io.max_batch:
        raise EngineError(f"{engine}: --max-batch {max_batch} exceeds the plan's profile maximum {io.max_batch}; "
                          "rebuild with a larger --max-batch or serve a smaller one")
    kind = "KIND_GPU" if gpu else "KIND_CPU"
    params = {"topk": str(topk), "score_threshold": str(score_threshold), "max_detections": str(max_detections)}
    models: dict[str, dict[str, str]] = {}
    engine_file = "model.plan" if plan else "model.onnx"
    if layout == "native":
        models[f"{name}_engine"] = {"config.pbtxt": engine_config(f"{name}_engine", io, engine_batch, instances,
                                                                  kind, delay_us)}
        params["engine_model"] = f"{name}_engine"
        python_kind = "KIND_CPU"
    else:
        params.update(engine_file=engine_file, device="cuda" if gpu else "cpu")
        python_kind = kind
    models[name] = {"config.pbtxt": python_config(name, max_batch, instances, python_kind, params, delay_us),
                    "1/model.py": MODEL_PY, f"1/{DESCRIPTION_FILE}": io.description.to_json()}
    engine_home = f"{name}_engine" if layout == "native" else name
    targets = [os.path.join(repo, m) for m in models]
    clashes = [t for t in targets if os.path.exists(t)]
    if clashes and not overwrite:
        raise OutputError(f"{clashes[0]} exists; pass --overwrite to replace it")
    try:
        os.makedirs(repo, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".ltdeploy-", dir=repo)
    except OSError as exc:
        raise OutputError(f"{repo}: cannot write the repository ({exc.strerror})") from None
    try:
        for model, files in models.items():
            for rel, text in files.items():
                path = os.path.join(staging, model, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(text)
        os.makedirs(os.path.join(staging, engine_home, "1"), exist_ok=True)
        shutil.copyfile(engine, os.path.join(staging, engine_home, "1", engine_file))
        if plan:
            shutil.copyfile(engine + ".json", os.path.join(staging, engine_home, "1", engine_file + ".json"))
        for model, target in zip(models, targets):
            if os.path.exists(target):
                shutil.rmtree(target)
            os.replace(os.path.join(staging, model), target)
    except OSError as exc:
        raise OutputError(f"{repo}: cannot write the repository ({exc.strerror})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return list(models)
