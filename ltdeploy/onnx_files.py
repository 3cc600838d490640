"""Reading ONNX graphs (the `onnx` package: the build and quantize extras) with one-line errors, and finding the
feature extractor's compute nodes: what computes the feature tensors `ltdeploy calibrate` recorded in the
description, or in an ltdeploy export, the nodes under its feature scopes."""
from __future__ import annotations

import os

from ltdeploy.errors import EngineError
from ltdeploy.metadata import METADATA_KEY, description_from_metadata

FEATURE_SCOPES = ("/backbone/", "/body/")  # where an ltdeploy export puts its feature extractor
# Ops whose float inputs all share one type T, so converting every float input of the node is valid.
FEATURE_OPS = frozenset({"Conv", "ConvTranspose", "BatchNormalization", "Relu", "LeakyRelu", "Clip", "HardSigmoid",
                         "HardSwish", "Add", "Sub", "Mul", "GlobalAveragePool", "AveragePool", "MaxPool", "Concat",
                         "Gemm", "MatMul", "Identity"})
MIN_RANK = 3  # feature maps (N, C, H, W) or (N, C, L); scalars and vectors are shape arithmetic
FLOAT = 1  # onnx.TensorProto.FLOAT


def import_onnx(extra: str = "build"):
    """The onnx module, or an EngineError naming the extra that brings it."""
    try:
        import onnx
    except ImportError:
        raise EngineError(f"this needs the onnx package: pip install 'ltdeploy[{extra}]'") from None
    return onnx


def load_onnx(path: str, extra: str = "build", weights: bool = True):
    """The ModelProto of an ONNX file (without external weights unless `weights`); EngineError for a missing or
    unreadable file."""
    onnx = import_onnx(extra)
    if not os.path.isfile(path):
        raise EngineError(f"{path}: no such ONNX file")
    try:
        return onnx.load(path, load_external_data=weights)
    except Exception as exc:  # onnx raises DecodeError / OSError variants
        raise EngineError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None


def tensor_types(model) -> dict[str, tuple[int, int]]:
    """name → (elem_type, rank) for every typed tensor of the top-level graph (after shape inference)."""
    onnx = import_onnx()
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {}
    for v in list(g.value_info) + list(g.input) + list(g.output):
        t = v.type.tensor_type
        if t.elem_type:
            types[v.name] = (t.elem_type, len(t.shape.dim) if t.HasField("shape") else -1)
    for init in g.initializer:
        types[init.name] = (init.data_type, len(init.dims))
    return types


def recorded_features(model) -> list[str]:
    """The feature tensors a calibrated foreign graph's description names (`calibration.feature_tensors`; none
    in ltdeploy's own exports, whose feature extractor sits under FEATURE_SCOPES)."""
    desc = get_description(model, "model", required=False)
    return [] if desc is None else list(desc.calibration.get("feature_tensors", []))


def ancestors(model, tensors: list[str]) -> set[str]:
    """Names of the top-level nodes that `tensors` are computed from (their producers, and theirs)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    seen, stack = set(), list(tensors)
    while stack:
        node = producer.get(stack.pop())
        if node is not None and node.name not in seen:
            seen.add(node.name)
            stack.extend(node.input)
    return seen


def feature_map_nodes(model, types: dict[str, tuple[int, int]],
                      scopes: tuple[str, ...] = FEATURE_SCOPES) -> set[str]:
    """Names of the feature extractor's top-level compute nodes that produce float feature maps: what runs in
    fp16 (ltdeploy.gpu.fp16) or int8 (ltdeploy.quantize); shape arithmetic and everything else stay as they
    are. The feature extractor is what computes the recorded feature tensors, else the nodes under `scopes`."""
    features = recorded_features(model)
    extractor = ancestors(model, features) if features else None
    chosen = set()
    for node in model.graph.node:
        inside = node.name in extractor if extractor is not None else any(s in node.name for s in scopes)
        if node.op_type not in FEATURE_OPS or not inside or not node.output:
            continue
        elem, rank = types.get(node.output[0], (0, -1))
        if elem == FLOAT and rank >= MIN_RANK:
            chosen.add(node.name)
    return chosen


def get_description(model, source: str, required: bool = True):
    """The model's ModelDescription from its metadata; without one, a one-line error (or None if not `required`)."""
    meta = {p.key: p.value for p in model.metadata_props}
    return description_from_metadata(meta, source) if required or METADATA_KEY in meta else None


def set_description(model, desc) -> None:
    """Put `desc` (a ModelDescription) into the model's metadata under ltdeploy's key (other keys kept)."""
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = desc.to_json()
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, desc.to_json()


def image_input(model):
    """The graph's image input: its first input that is not an initializer (older exporters list the weights
    among the inputs too)."""
    weights = {t.name for t in model.graph.initializer}
    return next(i for i in model.graph.input if i.name not in weights)
