"""Static INT8 quantization of an ltdeploy ONNX file with ONNX Runtime's quantization tool.

The written graph is QDQ (QuantizeLinear / DequantizeLinear pairs around the int8 operators) with per-channel
weights and symmetric scales for weights and activations: ONNX Runtime's CPU provider fuses it into int8
kernels, and it is the form TensorRT's explicit quantization takes (TensorRT quantizes symmetrically, zero
point 0). Only the feature extractor is quantized (`scope` "features": nodes under `/backbone/` or `/body/`,
the scopes the fp16 conversion uses); the classifier, the folded calibration (its sigmoid and per-class scale
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
from ltdeploy.metadata import METADATA_KEY, ModelDescription, description_from_metadata
from ltdeploy.onnx_files import FEATURE_SCOPES, feature_map_nodes, load_onnx, tensor_types
from ltdeploy.quantize import METHODS


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
    desc = description_from_metadata({p.key: p.value for p in model.metadata_props}, path)
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
        raise EngineError(f"no feature-map node under {' or '.join(FEATURE_SCOPES)}: nothing to quantize with "
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
                  scope: str = "features", reduce_range: bool = True) -> dict:
    """Write `dst`: `src` statically quantized to INT8 (QDQ) on `images`; `calibration` describes the set (it
    goes into the description with the method). Returns the description's `precision` record.

    `reduce_range` keeps weights to 7 bits: ONNX Runtime runs int8 convolutions on AVX2 CPUs without VNNI
    through VPMADDUBSW, whose 16-bit pair sums saturate with full-range weights and large activations (on
    EfficientNet-Lite0's first pointwise convolution that cost 8.9 mIoU); VNNI CPUs and TensorRT do not need it."""
    if method not in METHODS:
        raise EngineError(f"calibration method {method!r}: choose from {', '.join(METHODS)}")
    if not images:
        raise EngineError("no calibration images")
    onnx, q = _import_tools()
    model, desc = load_model(src)
    nodes = quantized_nodes(model, scope)
    precision = {"weights": "int8", "activations": "int8", "format": "QDQ", "per_channel": True,
                 "symmetric": True, "weight_bits": 7 if reduce_range else 8, "method": method, "scope": scope,
                 "calibration": calibration}
    with tempfile.TemporaryDirectory(prefix="ltdeploy-quantize-") as tmp:
        out = os.path.join(tmp, "model.int8.onnx")
        reader, cached = _reader(q, images, desc), {}
        with _quiet():
            if method == "entropy":
                cached, reader = {"calibration_cache_path": _entropy_ranges(q, src, reader, tmp)}, None
            q.quantize_static(model, out, reader, quant_format=q.QuantFormat.QDQ, per_channel=True,
                              reduce_range=reduce_range, activation_type=q.QuantType.QInt8,
                              weight_type=q.QuantType.QInt8, nodes_to_quantize=nodes,
                              calibrate_method=getattr(q.CalibrationMethod, METHODS[method]),
                              extra_options={"ActivationSymmetric": True, "WeightSymmetric": True}, **cached)
        quantized = onnx.load(out)
        pairs = sum(n.op_type == "QuantizeLinear" for n in quantized.graph.node)
        if pairs == 0:
            raise EngineError(f"{src}: the quantizer inserted no QuantizeLinear node")
        precision["quantize_nodes"] = pairs
        set_description(quantized, dataclasses.replace(desc, precision=precision))
        with atomic_path(dst) as part:
            onnx.save(quantized, part)
    return precision


def _entropy_ranges(q, src: str, reader, tmp: str) -> str:
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
        extra_options={"symmetric": True, "num_bins": 2048, "num_quantized_bins": 128})
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


def set_description(model, desc: ModelDescription) -> None:
    """Put `desc` into the model's metadata under ltdeploy's key (other keys kept)."""
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = desc.to_json()
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, desc.to_json()
