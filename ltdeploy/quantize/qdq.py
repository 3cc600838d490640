"""Static INT8 quantization of an ltdeploy ONNX file with ONNX Runtime's quantization tool.

The written graph is QDQ (QuantizeLinear / DequantizeLinear pairs around the int8 operators) with per-channel,
symmetric int8 weights. Activations depend on the target: for ONNX Runtime on CPU (`cpu`) uint8 with an
asymmetric zero point, the form its CPU provider fuses into int8 kernels end to end; for TensorRT's explicit
quantization (`tensorrt`) signed int8 with zero point 0, the only form TensorRT takes. The graph first goes
through ONNX Runtime's basic graph optimisations (batch norms and the TF-style "same" padding folded into the
convolutions, as its `quant_pre_process` does), so no float Pad or BatchNormalization sits between two int8
convolutions. Only the feature extractor is quantized (`scope` "features": nodes under `/backbone/` or `/body/`,
or in a graph `ltdeploy calibrate` wrote, the nodes computing its recorded feature tensors; as the fp16
conversion does); the classifier, the folded calibration (its sigmoid and per-class scale
and shift), softmax and the detector's RPN and RoI heads, box decoding and NMS stay float. docs/int8.md has the
measurements behind that choice; `scope` "all" (everything the tool can quantize) is there to compare.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import tempfile
from typing import Iterator

import numpy as np

from ltdeploy.errors import EngineError
from ltdeploy.evaluation.batches import model_input
from ltdeploy.files import atomic_path
from ltdeploy.metadata import ModelDescription
from ltdeploy.onnx_files import (
    FEATURE_SCOPES,
    feature_map_nodes,
    get_description,
    load_onnx,
    set_description,
    tensor_types,
)
from ltdeploy.quantize import METHODS, TARGETS


def _import_tools():
    try:
        import onnx
        from onnxruntime import quantization
    except ImportError:
        raise EngineError("quantization needs onnx and onnxruntime: pip install 'ltdeploy[quantize]'") from None
    return onnx, quantization


def load_model(path: str):
    """(the ONNX model, its description); EngineError for a missing, unreadable or already quantized file."""
    model = load_onnx(path, "quantize")
    desc = get_description(model, path)
    if desc.precision:
        raise EngineError(f"{path}: already {desc.precision.get('weights', 'quantized')}; quantize the fp32 export")
    if any(n.op_type == "QuantizeLinear" for n in model.graph.node):
        raise EngineError(f"{path}: the graph already holds QuantizeLinear nodes; quantize the fp32 export")
    return model, desc


def quantized_nodes(model, scope: str) -> list[str] | None:
    """Names of the top-level nodes the tool may quantize (None: every node it supports): with "features", the
    feature extractor's feature-map compute nodes, the ones the fp16 conversion converts (never the shape
    arithmetic a dynamic-size graph computes its padding with)."""
    if scope == "all":
        return None
    chosen = feature_map_nodes(model, tensor_types(model))
    if not chosen:
        raise EngineError(f"no feature-map node under {' or '.join(FEATURE_SCOPES)} or computing the recorded feature "
                          f"tensors: nothing to quantize with "
                          f"scope {scope!r} (try --scope all)")
    return [n.name for n in model.graph.node if n.name in chosen]


def _batches(paths: list[str], desc: ModelDescription) -> Iterator[dict[str, np.ndarray]]:
    for path in paths:
        yield {desc.input_name: model_input(path, desc.preprocess)[None]}


def _reader(quantization, paths: list[str], desc: ModelDescription):
    class Images(quantization.CalibrationDataReader):
        """One preprocessed image per call, as the runtime prepares it."""

        def __init__(self) -> None:
            self.it = _batches(paths, desc)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)
    return Images()


def quantize_int8(src: str, dst: str, images: list[str], calibration: dict, method: str = "minmax",
                  scope: str = "features", target: str = "cpu", full_range: bool = False) -> dict:
    """Write `dst`: `src` statically quantized to INT8 (QDQ) on `images` for `target`; `calibration` describes
    the set (it goes into the description with the method). Returns the description's `precision` record.

    Weights keep 7 bits on the CPU target unless `full_range`: ONNX Runtime runs int8 convolutions on AVX2 CPUs
    without VNNI through VPMADDUBSW, whose 16-bit pair sums saturate with full-range weights and large
    activations (on EfficientNet-Lite0's first pointwise convolution that cost 8.9 mIoU); VNNI CPUs and
    TensorRT do not need it, and the TensorRT target always has 8."""
    if method not in METHODS:
        raise EngineError(f"calibration method {method!r}: choose from {', '.join(METHODS)}")
    if target not in TARGETS:
        raise EngineError(f"target {target!r}: choose from {', '.join(TARGETS)}")
    if not images:
        raise EngineError("no calibration images")
    onnx, q = _import_tools()
    _, desc = load_model(src)
    cpu = target == "cpu"
    weight_bits = 7 if cpu and not full_range else 8
    precision = {"weights": "int8", "activations": "uint8" if cpu else "int8", "format": "QDQ",
                 "per_channel": True, "symmetric": not cpu, "weight_bits": weight_bits, "target": target,
                 "method": method, "scope": scope, "calibration": calibration}
    with tempfile.TemporaryDirectory(prefix="ltdeploy-quantize-") as tmp:
        out = os.path.join(tmp, "model.int8.onnx")
        with _quiet():
            source = _optimised(src, tmp)
            model = onnx.load(source)
            reader, cached = _reader(q, images, desc), {}
            if method == "entropy":
                cached, reader = {"calibration_cache_path": _entropy_ranges(q, source, reader, tmp, cpu)}, None
            q.quantize_static(model, out, reader, quant_format=q.QuantFormat.QDQ, per_channel=True,
                              reduce_range=weight_bits == 7,
                              activation_type=q.QuantType.QUInt8 if cpu else q.QuantType.QInt8,
                              weight_type=q.QuantType.QInt8, nodes_to_quantize=quantized_nodes(model, scope),
                              calibrate_method=getattr(q.CalibrationMethod, METHODS[method]),
                              extra_options={"ActivationSymmetric": not cpu, "WeightSymmetric": True}, **cached)
        quantized = onnx.load(out)
        pairs = sum(n.op_type == "QuantizeLinear" for n in quantized.graph.node)
        if pairs == 0:
            raise EngineError(f"{src}: the quantizer inserted no QuantizeLinear node")
        precision["quantize_nodes"] = pairs
        set_description(quantized, dataclasses.replace(desc, precision=precision))
        with atomic_path(dst) as part:
            onnx.save(quantized, part)
    return precision


def _optimised(src: str, tmp: str) -> str:
    """`src` after ONNX Runtime's basic (ONNX-standard) graph optimisations, the core of the tool's
    `quant_pre_process`, which is not called because its helpers import torch wherever torch is installed."""
    import onnx
    import onnxruntime as ort

    out = os.path.join(tmp, "optimised.onnx")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = out
    opts.log_severity_level = 3
    try:
        ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    except Exception:  # ORT's own exception types; the graph is then quantized as exported
        return src
    model = onnx.load(out)
    used = {n.domain for n in model.graph.node} | {""}  # the session lists every domain it knows
    kept = [o for o in model.opset_import if o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.save(model, out)
    return out


def _entropy_ranges(q, src: str, reader, tmp: str, cpu: bool) -> str:
    """Activation ranges by KL divergence over 2048-bin histograms into 128 quantized bins (TensorRT's recipe),
    saved where quantize_static reads cached ranges. quantize_static passes no bin counts to its own entropy
    calibrator, whose 128 and 128 leave one candidate threshold, the maximum: MinMax under another name."""
    from onnxruntime.quantization import calibrate

    if not hasattr(calibrate, "save_tensors_data"):
        raise EngineError("entropy calibration needs an onnxruntime whose quantize_static reads cached ranges "
                          "(calibration_cache_path); use --method minmax or percentile")
    calibrator = calibrate.create_calibrator(
        src, [], augmented_model_path=os.path.join(tmp, "augmented.onnx"),
        calibrate_method=q.CalibrationMethod.Entropy,
        extra_options={"symmetric": not cpu, "num_bins": 2048, "num_quantized_bins": 128})
    calibrator.collect_data(reader)
    path = os.path.join(tmp, "ranges.json")
    calibrate.save_tensors_data(calibrator.compute_data(), path)
    return path


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The tool prints its calibration steps and logs advice on the root logger; neither is for our users."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
