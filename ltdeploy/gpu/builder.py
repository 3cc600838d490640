"""`ltdeploy build`: an ONNX file exported by ltdeploy → a TensorRT plan plus `<plan>.json`.

Written for the TensorRT 10.x and 11.x Python APIs:
- no EXPLICIT_BATCH flag (ignored in 10, gone in 11);
- fp16 goes into the ONNX first (`ltdeploy.gpu.fp16`: feature extractor fp16, heads and calibration fp32);
  on 11 every network is strongly typed, on 10 the STRONGLY_TYPED flag asks for the same behaviour,
  so one plan has the same precision on both, and no deprecated FP16 builder flag is used;
- INT8 comes as a QDQ ONNX (`ltdeploy quantize`): TensorRT's explicit quantization reads the precision from
  the Q/DQ nodes; it needs STRONGLY_TYPED on 10 (always on in 11) and no INT8 flag (deprecated in 10, gone
  in 11), and it is never combined with the fp16 conversion;
- one optimization profile per requested batch range; `build_serialized_network` returns None on failure;
- the bundled plugins are registered before parsing (RoiAlign imports as the ROIAlign_TRT plugin);
- TF32 is cleared: TensorRT turns it on by default, and a plan called fp32 (or the fp32 heads of an fp16
  one) would otherwise run convolutions and matrix products with 10-bit mantissas.
The plan is written byte-for-byte as TensorRT serialized it (trtexec and Triton load it as is).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np

from ltdeploy.errors import EngineError
from ltdeploy.files import atomic_path, file_sha256
from ltdeploy.gpu.plan import BuildInfo, TensorSpec, write_plan_description
from ltdeploy.gpu.trt_common import capturing_logger, import_tensorrt, register_plugins, tensorrt_major
from ltdeploy.graph_check import trt_blockers
from ltdeploy.metadata import ModelDescription
from ltdeploy.onnx_files import get_description, load_onnx
from ltdeploy.tasks import task_spec


@dataclass(frozen=True)
class BatchRange:
    """One optimization profile over the batch dimension."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise EngineError(f"batch range {self.min}:{self.opt}:{self.max} must satisfy 1 <= min <= opt <= max")

    @classmethod
    def parse(cls, text: str) -> "BatchRange":
        """'1:8:32' → BatchRange(1, 8, 32)."""
        try:
            lo, opt, hi = (int(v) for v in text.split(":"))
        except ValueError:
            raise EngineError(f"batch range {text!r}: expected MIN:OPT:MAX, e.g. 1:8:32") from None
        return cls(lo, opt, hi)


def read_onnx_description(path: str) -> ModelDescription:
    """The ltdeploy description in an ONNX file's metadata (without loading the weights)."""
    return _read_onnx(path)[0]


def _read_onnx(path: str) -> tuple[ModelDescription, bool]:
    """(description, whether the graph is explicitly quantized) of a buildable ONNX file."""
    model = load_onnx(path, weights=False)
    description = get_description(model, path)
    blockers = trt_blockers(model)
    if blockers:
        raise EngineError(f"{path}: TensorRT cannot build this graph ({'; '.join(blockers)[:300]}); re-export it "
                          "with this ltdeploy (masks leave the graph per box)")
    return description, any(n.op_type == "QuantizeLinear" for n in model.graph.node)


def _shape(dims: list[int], batch: int, spatial: tuple[int, int], size: tuple[int, int]) -> list[int]:
    """An input's shape with this batch and, where dynamic, this (height, width) on the spatial axes."""
    out = [batch, *dims[1:]]
    if len(out) == 4:
        for axis, s in zip(spatial, size):
            out[axis] = out[axis] if out[axis] > 0 else s
    return out


def _profiles(builder, config, network, ranges: list[BatchRange], sizes: tuple[tuple[int, int], ...],
              layout: str = "NCHW") -> list[dict[str, list[list[int]]]]:
    """One optimization profile per batch range. Dynamic height / width (axes 2, 3; NHWC: 1, 2) take the
    (smallest, typical, largest) sizes ltdeploy's preprocessing feeds: one size for classification and
    segmentation, the fitted range (a strip, a 4:3 photo, the max_size square) for detection."""
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    dynamic = [t for t in inputs if any(d < 0 for d in t.shape)]
    if not dynamic:
        return [{t.name: [list(t.shape)] * 3 for t in inputs}]
    spatial = (1, 2) if layout == "NHWC" else (2, 3)
    recorded = []
    for r in ranges:
        profile = builder.create_optimization_profile()
        shapes = {}
        for t in dynamic:
            dims = list(t.shape)
            free = (0, *spatial) if len(dims) == 4 else (0,)
            if any(d < 0 and i not in free for i, d in enumerate(dims)):
                raise EngineError(f"input {t.name!r} has shape {list(t.shape)}: only the batch, height and width "
                                  "may be dynamic")
            batches = (r.min, r.opt, r.max) if dims[0] < 0 else (dims[0],) * 3
            lo, opt, hi = (_shape(dims, b, spatial, size) for b, size in zip(batches, sizes))
            shapes[t.name] = [lo, opt, hi]
            try:
                profile.set_shape(t.name, lo, opt, hi)
            except (RuntimeError, TypeError, ValueError) as exc:
                raise EngineError(f"TensorRT refused the profile {lo}..{hi} for input {t.name!r} "
                                  f"({str(exc).splitlines()[0][:200]})") from None
        if config.add_optimization_profile(profile) < 0:
            raise EngineError(f"TensorRT rejected the optimization profile {r.min}:{r.opt}:{r.max}")
        recorded.append(shapes)
        if all(t.shape[0] > 0 for t in dynamic):
            break  # a fixed batch needs one profile only
    return recorded


def _parser_error(err) -> str:
    """'node /roi_heads/RoiAlign (RoiAlign): Plugin not found ...': which node failed, not only why."""
    name = getattr(err, "node_name", lambda: "")() or ""
    op = getattr(err, "node_operator", lambda: "")() or ""
    where = f"node {name} ({op}): " if name or op else ""
    return where + str(err.desc())


def _tensor_specs(trt, network) -> list[TensorSpec]:
    specs = [TensorSpec(t.name, "input", np.dtype(trt.nptype(t.dtype)).name, [int(d) for d in t.shape])
             for t in (network.get_input(i) for i in range(network.num_inputs))]
    specs += [TensorSpec(t.name, "output", np.dtype(trt.nptype(t.dtype)).name, [int(d) for d in t.shape])
              for t in (network.get_output(i) for i in range(network.num_outputs))]
    return specs


def build_plan(onnx_path: str, plan_path: str, fp16: bool = False, ranges: list[BatchRange] | None = None,
               workspace_gib: float = 4.0, gpu_index: int = 0) -> BuildInfo:
    """Build a TensorRT plan from an ltdeploy ONNX file; write it and its description atomically."""
    from ltdeploy.gpu.cuda import current_gpu

    if not os.path.isfile(onnx_path):
        raise EngineError(f"{onnx_path}: no such ONNX file")
    description, int8 = _read_onnx(onnx_path)
    if int8 and fp16:
        raise EngineError(f"{onnx_path}: an INT8 (QDQ) model; build it without --fp16")
    if int8 and not (description.precision or {}).get("symmetric", True):
        raise EngineError(f"{onnx_path}: quantized for ONNX Runtime on CPU (uint8 activations, asymmetric); "
                          f"TensorRT takes only symmetric int8: ltdeploy quantize --target tensorrt")
    trt = import_tensorrt("ltdeploy build")
    gpu = current_gpu(gpu_index)
    ranges = ranges or [BatchRange(*task_spec(description.task).batch_range)]
    logger = capturing_logger(trt)
    with tempfile.TemporaryDirectory(prefix="ltdeploy-build-") as tmp:
        source = onnx_path
        if fp16:
            from ltdeploy.gpu.fp16 import convert_to_fp16
            source = os.path.join(tmp, "model.fp16.onnx")
            convert_to_fp16(onnx_path, source)
        flags = 0
        if tensorrt_major(trt) == 10 and (fp16 or int8):
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        register_plugins(trt, logger)
        builder = trt.Builder(logger)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(source):
            errors = "; ".join(_parser_error(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors[:400] or logger.last_error()}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
        config.clear_flag(trt.BuilderFlag.TF32)
        profiles = _profiles(builder, config, network, ranges, description.preprocess.shape_range(),
                             description.preprocess.layout)
        tensors = _tensor_specs(trt, network)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise EngineError(f"{onnx_path}: TensorRT could not build an engine ({logger.last_error()}); "
                              f"'could not find any implementation' often means too little workspace "
                              f"(--workspace, now {workspace_gib:g} GiB)")
    with atomic_path(plan_path) as tmp, open(tmp, "wb") as f:
        f.write(memoryview(serialized))
    info = BuildInfo(tensorrt_version=trt.__version__, gpu_name=gpu.name, compute_capability=gpu.compute_capability,
                     precision="int8" if int8 else "fp16" if fp16 else "fp32", profiles=profiles, tensors=tensors,
                     onnx_sha256=file_sha256(onnx_path), plan_sha256=file_sha256(plan_path),
                     cuda_runtime=gpu.cuda_runtime, driver=gpu.driver,
                     extra={"tf32": False, "strongly_typed": bool(flags) or tensorrt_major(trt) >= 11})
    write_plan_description(plan_path, description, info)
    return info
