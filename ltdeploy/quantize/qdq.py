"""Static INT8 quantization of an ltdeploy ONNX file with ONNX Runtime's quantization tool.

The written graph is QDQ (QuantizeLinear / DequantizeLinear pairs around the int8 operators) with per-channel
weights and symmetric scales for weights and activations: ONNX Runtime's CPU provider fuses it into int8
kernels, and it is the form TensorRT's explicit quantization takes (TensorRT quantizes symmetrically, zero
point 0). Only the feature extractor is quantized (`scope` "features": nodes under `/backbone/` or `/body/`,
the scopes the fp16 conversion uses); the classifier, the folded calibration (its sigmoid and per-class scale
and shift), softmax and the detector's RoI heads, box decoding and NMS stay float. docs/int8.md has the
measurements behind that choice; `scope` "all" quantizes everything the tool can, for comparison.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Iterator

import numpy as np

from ltdeploy.errors import EngineError
from ltdeploy.files import atomic_path
from ltdeploy.gpu.fp16 import FP16_SCOPES as FEATURE_SCOPES
from ltdeploy.image_io import read_image
from ltdeploy.metadata import METADATA_KEY, ModelDescription, description_from_metadata
from ltdeploy.onnx_files import load_onnx
from ltdeploy.preprocess import preprocess_image
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
    """Names of the top-level nodes the tool may quantize (None: every node it supports)."""
    if scope == "all":
        return None
    names = [n.name for n in model.graph.node if any(s in n.name for s in FEATURE_SCOPES)]
    if not names:
        raise EngineError(f"no node under {' or '.join(FEATURE_SCOPES)}: nothing to quantize with scope "
                          "'features' (try --scope all)")
    return names


def _batches(paths: list[str], desc: ModelDescription) -> Iterator[dict[str, np.ndarray]]:
    for path in paths:
        yield {desc.input_name: preprocess_image(read_image(path), desc.preprocess)[None]}


def _reader(quantization, paths: list[str], desc: ModelDescription):
    class Images(quantization.CalibrationDataReader):
        """One preprocessed image per call, as the runtime prepares it."""

        def __init__(self) -> None:
            self.it = _batches(paths, desc)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)
    return Images()


def quantize_int8(src: str, dst: str, images: list[str], calibration: dict, method: str = "minmax",
                  scope: str = "features") -> dict:
    """Write `dst`: `src` statically quantized to INT8 (QDQ) on `images`; `calibration` describes the set (it
    goes into the description with the method). Returns the description's `precision` record."""
    if method not in METHODS:
        raise EngineError(f"calibration method {method!r}: choose from {', '.join(METHODS)}")
    if not images:
        raise EngineError("no calibration images")
    onnx, q = _import_tools()
    model, desc = load_model(src)
    nodes = quantized_nodes(model, scope)
    precision = {"weights": "int8", "activations": "int8", "format": "QDQ", "per_channel": True,
                 "symmetric": True, "method": method, "scope": scope, "calibration": calibration}
    with tempfile.TemporaryDirectory(prefix="ltdeploy-quantize-") as tmp:
        out = os.path.join(tmp, "model.int8.onnx")
        q.quantize_static(model, out, _reader(q, images, desc), quant_format=q.QuantFormat.QDQ, per_channel=True,
                          activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8, nodes_to_quantize=nodes,
                          calibrate_method=getattr(q.CalibrationMethod, METHODS[method]),
                          extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
        quantized = onnx.load(out)
        pairs = sum(n.op_type == "QuantizeLinear" for n in quantized.graph.node)
        if pairs == 0:
            raise EngineError(f"{src}: the quantizer inserted no QuantizeLinear node")
        precision["quantize_nodes"] = pairs
        set_description(quantized, dataclasses.replace(desc, precision=precision))
        with atomic_path(dst) as part:
            onnx.save(quantized, part)
    return precision


def set_description(model, desc: ModelDescription) -> None:
    """Put `desc` into the model's metadata under ltdeploy's key (other keys kept)."""
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = desc.to_json()
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, desc.to_json()
