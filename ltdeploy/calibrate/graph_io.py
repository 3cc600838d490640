"""Reading and writing the user's ONNX file: weights held outside the file (models over 2 GB) through onnx's
external-data API, nodes given names where the writer left them blank, and copies with extra outputs for
caching."""
from __future__ import annotations

import copy
import os

from ltdeploy.errors import EngineError
from ltdeploy.files import atomic_path
from ltdeploy.onnx_files import import_onnx, load_onnx

PROTOBUF_LIMIT = 2_000_000_000  # a ModelProto serialises to one protobuf message, at most 2 GiB
EXTRA = "calibrate"


def read_model(path: str):
    """(the ModelProto with its weights loaded, whether any were stored outside the file); every node named."""
    onnx = import_onnx(EXTRA)
    from onnx.external_data_helper import uses_external_data

    bare = load_onnx(path, EXTRA, weights=False)
    external = any(uses_external_data(t) for t in bare.graph.initializer)
    model = load_onnx(path, EXTRA) if external else bare
    if not model.graph.input or not model.graph.node:
        raise EngineError(f"{path}: the ONNX graph has no input or no node")
    try:
        onnx.checker.check_model(path)  # by path: the checker reads external weights itself
    except onnx.checker.ValidationError as exc:
        raise EngineError(f"{path}: not a valid ONNX model ({str(exc).splitlines()[0]})") from None
    taken = {n.name for n in model.graph.node}
    for i, node in enumerate(model.graph.node):
        if not node.name:  # writers may leave names blank; the head is found and replaced by name
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
    return model, external


def write_model(model, path: str, external: bool) -> None:
    """Write `model` to `path` atomically; its weights go to `<name>.data` beside it when the source kept them
    outside or the graph is over protobuf's 2 GiB."""
    onnx = import_onnx(EXTRA)
    big = external or sum(len(t.raw_data) for t in model.graph.initializer) > PROTOBUF_LIMIT // 2
    if not big:
        with atomic_path(path) as tmp:
            onnx.save_model(model, tmp)
        return
    data = os.path.basename(path) + ".data"
    with atomic_path(os.path.join(os.path.dirname(os.path.abspath(path)), data)) as tmp_data:
        # onnx writes the weights relative to the model file: write both under the final names' folder
        with atomic_path(path) as tmp:
            onnx.save_model(copy.deepcopy(model), tmp, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=os.path.basename(tmp_data), size_threshold=1024)
            _relocate(tmp, os.path.basename(tmp_data), data)


def _relocate(model_path: str, written: str, final: str) -> None:
    """Point the model's external-data entries from the temporary weights file to its final name."""
    onnx = import_onnx(EXTRA)
    model = onnx.load(model_path, load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location" and entry.value == written:
                entry.value = final
    onnx.save_model(model, model_path)


def with_outputs(model, names: list[str]):
    """A copy of `model` that also outputs the tensors `names` (float, any shape)."""
    onnx = import_onnx(EXTRA)
    out = copy.deepcopy(model)
    have = {o.name for o in out.graph.output}
    for name in names:
        if name not in have:
            out.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return out


def session(model, folder: str, name: str = "model.onnx"):
    """An ONNX Runtime CPU session on `model`, written to `folder` first (so that weights over 2 GiB can go
    beside it)."""
    import onnxruntime as ort

    path = os.path.join(folder, name)
    write_model(model, path, external=False)  # it moves the weights beside the graph itself when they are too big
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ONNX Runtime's own exception types
        raise EngineError(f"ONNX Runtime cannot run the model: {str(exc).splitlines()[0][:300]}") from None
