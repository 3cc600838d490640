"""Helpers several test files share: stand-in plan files and their descriptions, Triton's config schema,
and a hand-made ONNX Loop."""
from __future__ import annotations

import importlib.util
import os
import struct
from pathlib import Path

import numpy as np
import onnx
import tritonclient.http
from conftest import ROOT
from google.protobuf import text_format
from onnx import TensorProto, helper

from ltdeploy.files import file_sha256
from ltdeploy.gpu.plan import BuildInfo, TensorSpec
from ltdeploy.metadata import ModelDescription, description_from_metadata


def fake_plan(path, version=(10, 13, 2, 6), body: bytes = b"\x01" * 100) -> str:
    """A file with a real plan header (magic, 0, ..., version at bytes 24-27) and an arbitrary body."""
    head = struct.pack("<II", 0x74727466, 0) + bytes(16) + bytes(version)
    with open(path, "wb") as f:
        f.write(head + body)
    return str(path)


def description_of(onnx_path) -> ModelDescription:
    meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    return description_from_metadata(meta, str(onnx_path))


def build_info(plan: str, cc: str = "8.9", version: str = "10.13.2.6") -> BuildInfo:
    return BuildInfo(tensorrt_version=version, gpu_name="NVIDIA L4", compute_capability=cc, precision="fp16",
                     profiles=[{"images": [[1, 3, 32, 32], [8, 3, 32, 32], [32, 3, 32, 32]]}],
                     tensors=[TensorSpec("images", "input", "float32", [-1, 3, 32, 32]),
                              TensorSpec("logits", "output", "float32", [-1, 10])],
                     onnx_sha256="0" * 64, plan_sha256=file_sha256(plan))


TRITON_PYTHON = os.environ.get("LTDEPLOY_TRITON_PYTHON", str(ROOT / ".venv-triton" / "bin" / "python"))


def model_config_schema():
    """Triton's ModelConfig protobuf, as shipped in tritonclient (loaded without the grpc extra)."""
    path = Path(tritonclient.http.__file__).parents[1] / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ModelConfig


def parse_config(path: Path):
    return text_format.Parse(path.read_text(), model_config_schema()())


def loop_model(grow: bool) -> onnx.ModelProto:
    """A Loop adding 1 to its carried (2,) vector, or concatenating onto it."""
    one = helper.make_node("Constant", [], ["one"], value=helper.make_tensor("c", TensorProto.FLOAT, [2], [1, 1]))
    step = (helper.make_node("Concat", ["x_in", "one"], ["x_out"], axis=0) if grow
            else helper.make_node("Add", ["x_in", "one"], ["x_out"]))
    keep = helper.make_node("Identity", ["cond_in"], ["cond_out"])
    body = helper.make_graph(
        [one, step, keep], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_out", TensorProto.FLOAT, None)])
    loop = helper.make_node("Loop", ["n", "", "x0"], ["x"], name="accumulate", body=body)
    graph = helper.make_graph([loop], "g", [helper.make_tensor_value_info("n", TensorProto.INT64, []),
                                           helper.make_tensor_value_info("x0", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE of a whole binary mask (H, W): column-major run lengths, starting with zeros (the
    reference the runtime's patch encoder is checked against)."""
    flat = np.asarray(mask, np.uint8).ravel(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}
