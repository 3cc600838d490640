"""fp16 ONNX for TensorRT 11 (which has no FP16 builder flag: precision must be in the graph).

Only the feature extractor runs in fp16: top-level compute nodes (convolutions, normalisation,
activations, pooling, elementwise) under `/backbone/` or `/body/` (in a graph `ltdeploy calibrate` wrote: the
nodes computing its recorded feature tensors) whose output is a feature map. The
calibrated head, sigmoid / softmax, box decoding, NMS, every subgraph and all shape arithmetic stay
fp32, so DisAlign's confidence and per-class scale keep their precision and rare-class scores are not
rounded into ties. Casts are inserted once per tensor where the two regions meet.

Why not a library: the maintained converters (onnxconverter-common 1.16 and its copy in
`onnxruntime.transformers.float16`) round the output of every fp32-blocked node through fp16 before
the next blocked node reads it (so the "fp32" calibration math would run on fp16 values), and on our
detector they write graphs ONNX Runtime rejects (type errors inside the NMS `If` subgraphs and around
timm's same-padding shape arithmetic). Both were tried on our exports; see the issue-6 note.
"""
from __future__ import annotations

from ltdeploy.errors import EngineError
from ltdeploy.files import atomic_path
from ltdeploy.onnx_files import FEATURE_SCOPES, feature_map_nodes, load_onnx, tensor_types

FP16_SCOPES = FEATURE_SCOPES

FLOAT, FLOAT16 = 1, 10  # onnx.TensorProto.FLOAT / FLOAT16


def _import_onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise EngineError("fp16 conversion needs the onnx package: pip install 'ltdeploy[build]'") from None
    return onnx, numpy_helper


def _subgraph_reads(graph) -> set[str]:
    """Names read anywhere inside the subgraphs of `graph`'s nodes (outer-scope references included)."""
    names: set[str] = set()
    for node in graph.node:
        for attr in node.attribute:
            for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                for inner in g.node:
                    names.update(inner.input)
                names |= _subgraph_reads(g)
                names.update(o.name for o in g.output)
    return names


def convert_model(model, scopes: tuple[str, ...] = FP16_SCOPES) -> dict:
    """Convert `model` in place; returns counts (nodes, fp16 nodes, casts inserted)."""
    onnx, numpy_helper = _import_onnx()
    types = tensor_types(model)
    graph = model.graph
    half = feature_map_nodes(model, types, scopes)
    if not half:
        raise EngineError(f"no feature-map node under {' or '.join(scopes)} or computing recorded features (fp16)")
    is_float = {n for n, (e, _) in types.items() if e == FLOAT}
    inits = {i.name: i for i in graph.initializer}
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant" and n.output}
    producer = {o: n for n in graph.node for o in n.output}
    fp16_reads, fp32_reads = _float_reads(graph, half, is_float)
    new_nodes, new_inits, casts = [], [], 0
    renamed: dict[str, str] = {}  # fp32 tensor → its fp16 twin read by fp16 nodes

    def fp16_twin(name: str) -> str:
        nonlocal casts
        if name in renamed:
            return renamed[name]
        twin = f"{name}__fp16"
        if name in inits and name not in fp32_reads:
            init = inits[name]
            arr = numpy_helper.to_array(init).astype("float16")
            init.CopyFrom(numpy_helper.from_array(arr, name))
            return name
        if name in inits:
            new_inits.append(numpy_helper.from_array(numpy_helper.to_array(inits[name]).astype("float16"), twin))
        else:
            new_nodes.append(onnx.helper.make_node("Cast", [name], [twin], name=f"{twin}_cast", to=FLOAT16))
            casts += 1
        renamed[name] = twin
        return twin

    for name in fp16_reads:
        src = producer.get(name)
        if src is not None and src.name in half:
            continue  # already fp16
        if name in constants and name not in fp32_reads:
            value = next(a for a in constants[name].attribute if a.name == "value")
            value.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(value.t).astype("float16"), value.t.name))
            continue
        fp16_twin(name)
    back: list = []  # fp16 outputs that fp32 nodes or graph outputs read: cast back under the original name
    half_nodes = [n for n in graph.node if n.name in half]
    for node in half_nodes:
        for k, name in enumerate(node.output):
            if name in fp32_reads:
                renamed[name] = node.output[k] = f"{name}__fp16"
                back.append(onnx.helper.make_node("Cast", [node.output[k]], [name], name=f"{name}_to_fp32", to=FLOAT))
                casts += 1
    for node in half_nodes:
        for k, name in enumerate(node.input):
            if name in renamed:
                node.input[k] = renamed[name]
    graph.initializer.extend(new_inits)
    nodes = len(graph.node)
    _insert_casts(graph, new_nodes, back, producer)
    del graph.value_info[:]  # stale types; ONNX Runtime and TensorRT infer them again
    return {"nodes": nodes, "fp16_nodes": len(half), "casts": casts}


def _float_reads(graph, half: set[str], is_float: set[str]) -> tuple[set[str], set[str]]:
    """The float tensors read by fp16 nodes, and those read in fp32 (other nodes, subgraphs, graph outputs)."""
    fp32_reads: set[str] = _subgraph_reads(graph) | {o.name for o in graph.output}
    fp16_reads: set[str] = set()
    for node in graph.node:
        if node.op_type in ("Shape", "Size"):
            continue  # read any element type
        (fp16_reads if node.name in half else fp32_reads).update(i for i in node.input if i in is_float)
    return fp16_reads, fp32_reads


def _insert_casts(graph, to_fp16: list, back: list, producer: dict) -> None:
    """Put the new Casts into the graph in topological order: each right after the node producing its input,
    or first when it casts a graph input or an initializer (`producer`: the graph's own outputs)."""
    follow: dict[str, list] = {}
    for c in to_fp16 + back:
        follow.setdefault(c.input[0], []).append(c)
    rebuilt = [c for c in to_fp16 if c.input[0] not in producer]
    for node in list(graph.node):
        rebuilt.append(node)
        for out in node.output:
            rebuilt.extend(follow.get(out, []))
    del graph.node[:]
    graph.node.extend(rebuilt)


def convert_to_fp16(src: str, dst: str, scopes: tuple[str, ...] = FP16_SCOPES) -> dict:
    """Write `dst`: `src` with its feature extractor in fp16, fp32 inputs, outputs, heads and post-processing;
    the model's description travels along in the metadata. Returns node and cast counts."""
    onnx, _ = _import_onnx()
    model = load_onnx(src)
    try:
        counts = convert_model(model, scopes)
    except EngineError as exc:
        raise EngineError(f"{src}: {exc}") from None
    with atomic_path(dst) as tmp:
        onnx.save(model, tmp)
    return counts
