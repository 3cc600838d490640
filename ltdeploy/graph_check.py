"""Graph constructs TensorRT cannot build, found in an ONNX model before anyone tries.

TensorRT maps each loop-carried value of an ONNX `Loop` to a recurrence whose shape must stay the same
across iterations, and a `Scan` output of data-dependent length has no static size either. torchvision's
traced mask pasting is such a loop (its output grows by one image-sized mask per detection). The
exporter refuses to write a graph holding one, and `ltdeploy build` refuses to parse one, each in a line.
"""
from __future__ import annotations

# Producers whose output is longer than the value they extend: a carried value fed by one grows.
_GROWING = {"Concat", "ConcatFromSequence", "SequenceInsert", "SequenceConstruct", "Pad", "Expand", "Tile"}


def _subgraphs(node) -> list:
    import onnx

    out = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            out.append(attr.g)
        elif attr.type == onnx.AttributeProto.GRAPHS:
            out.extend(attr.graphs)
    return out


def _growing_carried(loop) -> list[str]:
    """Names of a Loop's carried values whose body output comes from a lengthening op, or changes shape."""
    body = _subgraphs(loop)[0]
    producer = {o: n for n in body.node for o in n.output}
    carried_in = list(body.input)[2:]  # (iteration, condition, carried...)
    carried_out = list(body.output)[1:1 + len(carried_in)]
    grown = []
    for vin, vout in zip(carried_in, carried_out):
        node = producer.get(vout.name)
        dims_in = [d.dim_value or d.dim_param for d in vin.type.tensor_type.shape.dim]
        dims_out = [d.dim_value or d.dim_param for d in vout.type.tensor_type.shape.dim]
        if (node is not None and node.op_type in _GROWING) or (dims_in and dims_out and dims_in != dims_out):
            grown.append(vin.name)
    return grown


def trt_blockers(model) -> list[str]:
    """One line per construct TensorRT cannot build: Loops with a growing carried value, Scans (any depth)."""
    found: list[str] = []

    def walk(graph, where: str) -> None:
        for node in graph.node:
            name = node.name or node.op_type
            if node.op_type == "Loop":
                grown = _growing_carried(node)
                if grown:
                    found.append(f"Loop {where}{name} carries {', '.join(grown)}, which grow each iteration")
            elif node.op_type == "Scan":
                found.append(f"Scan {where}{name}")
            for sub in _subgraphs(node):
                walk(sub, f"{where}{name}/")

    walk(model.graph, "")
    return found
