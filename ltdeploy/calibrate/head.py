"""Finding the classifier in an ONNX graph: the linear map(s) that make the logits, the feature tensor(s) they
read, and what follows them (a Softmax; for a segmenter, a Resize to the input's size).

Classification: the last Gemm, or MatMul (+ Add), before an optional Softmax; its input is the feature (N, d).
Segmentation: the final 1x1 Conv before an optional Resize (and Softmax), or two summed (LR-ASPP); each conv's
input is a feature map. A graph that ends any other way is refused, naming the ops it found.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ltdeploy.errors import EngineError

PASS_THROUGH = ("Identity",)
PER_PIXEL_TASKS = {False: "classification", True: "segmentation"}  # the task a head's kind makes


@dataclass
class Linear:
    """One linear map of the head: logits += W . feature + b, W (K, d), over a vector (Gemm / MatMul) or at every
    pixel of a feature map (1x1 Conv)."""

    feature: str
    weight: np.ndarray
    bias: np.ndarray
    kind: str  # "gemm" (Gemm or MatMul + Add, on (N, d)) or "conv" (1x1 Conv on (N, C, H, W))
    nodes: list[str] = field(default_factory=list)  # the nodes it replaces


@dataclass
class Head:
    """The classifier of a graph and its surroundings."""

    task: str  # classification | segmentation
    parts: list[Linear]  # one map, or two summed (LR-ASPP)
    logits: str  # the tensor holding the logits (before any Softmax / Resize)
    nodes: list[str]  # every node that computes `logits` from the features (the ones a fold replaces)
    softmax: dict | None  # {"node", "axis", "opset"} of a Softmax after the logits
    resize: str | None  # a Resize after the logits (segmentation)
    output: str  # the graph output the head feeds

    @property
    def per_pixel(self) -> bool:
        """A segmenter's head: 1x1 convolutions over feature maps."""
        return self.parts[0].kind == "conv"

    @property
    def num_classes(self) -> int:
        """K."""
        return self.parts[0].weight.shape[0]

    @property
    def features(self) -> list[str]:
        """The feature tensors, in part order."""
        return [p.feature for p in self.parts]

    @property
    def feature_dim(self) -> int:
        """d: the summed parts' feature channels, concatenated."""
        return sum(p.weight.shape[1] for p in self.parts)


class _Graph:
    """Producers, constants and attributes of a model's top-level graph."""

    def __init__(self, model) -> None:
        from onnx import numpy_helper

        g = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.producer = {out: n for n in g.node for out in n.output}
        self.consumers: dict[str, list] = {}
        for n in g.node:
            for name in n.input:
                self.consumers.setdefault(name, []).append(n)
        self.const = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        for n in g.node:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self.const[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)

    def node(self, tensor: str):
        """The node producing `tensor`, skipping Identity nodes (None for a graph input or a constant)."""
        n = self.producer.get(tensor)
        while n is not None and n.op_type in PASS_THROUGH:
            n = self.producer.get(n.input[0])
        return n

    def trail(self, tensor: str, depth: int = 4) -> str:
        """The ops that end at `tensor`, last first ('Div <- Add <- Gemm, Gemm')."""
        ops, frontier = [], [tensor]
        for _ in range(depth):
            nodes = [n for n in (self.node(t) for t in frontier) if n is not None]
            if not nodes:
                break
            ops.append(", ".join(n.op_type for n in nodes))
            frontier = [i for n in nodes for i in n.input if i not in self.const]
        return " <- ".join(ops) or "a graph input"


def _attr(node, name: str, default):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _gemm(g: _Graph, node) -> Linear | None:
    if _attr(node, "transA", 0) or node.input[1] not in g.const:
        return None
    b = g.const[node.input[1]].astype(np.float32)
    w = (b if _attr(node, "transB", 0) else b.T) * np.float32(_attr(node, "alpha", 1.0))
    bias = g.const.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    bias = np.zeros(w.shape[0], np.float32) if bias is None else \
        np.broadcast_to(bias.astype(np.float32).reshape(-1), (w.shape[0],)) * np.float32(_attr(node, "beta", 1.0))
    return Linear(node.input[0], np.ascontiguousarray(w), np.ascontiguousarray(bias), "gemm", [node.name])


def _matmul_add(g: _Graph, node) -> Linear | None:
    """Add(MatMul(x, W), b) in either order, or MatMul(x, W) alone (tf2onnx's Keras Dense)."""
    matmul, bias, nodes = node, None, []
    if node.op_type == "Add":
        for i, other in ((0, 1), (1, 0)):
            producer = g.node(node.input[i])
            if producer is not None and producer.op_type == "MatMul" and node.input[other] in g.const:
                matmul, bias, nodes = producer, g.const[node.input[other]], [node.name]
                break
        else:
            return None
    if matmul.op_type != "MatMul" or matmul.input[1] not in g.const:
        return None
    w = g.const[matmul.input[1]].astype(np.float32)
    if w.ndim != 2:
        return None
    k = w.shape[1]
    if bias is not None and bias.size != k:
        return None
    b = np.zeros(k, np.float32) if bias is None else bias.astype(np.float32).reshape(-1)
    return Linear(matmul.input[0], np.ascontiguousarray(w.T), b, "gemm", [matmul.name, *nodes])


def _conv1x1(g: _Graph, node) -> Linear | None:
    if node.op_type != "Conv" or node.input[1] not in g.const:
        return None
    w = g.const[node.input[1]]
    plain = all(v == 1 for v in _attr(node, "strides", [1, 1]) + _attr(node, "dilations", [1, 1])) and \
        not any(_attr(node, "pads", [0, 0, 0, 0])) and _attr(node, "group", 1) == 1
    if w.ndim != 4 or w.shape[2:] != (1, 1) or not plain:
        return None
    bias = g.const.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    b = np.zeros(w.shape[0], np.float32) if bias is None else bias.astype(np.float32)
    return Linear(node.input[0], np.ascontiguousarray(w[:, :, 0, 0].astype(np.float32)), b, "conv", [node.name])


def _linear(g: _Graph, node) -> Linear | None:
    if node is None:
        return None
    if node.op_type == "Gemm":
        return _gemm(g, node)
    if node.op_type in ("MatMul", "Add"):
        return _matmul_add(g, node)
    return _conv1x1(g, node)


def find_head(model) -> Head:
    """The classifier of `model` (a ModelProto), or an EngineError naming what the graph ends with."""
    g = _Graph(model)
    outputs = [o.name for o in model.graph.output]
    if len(outputs) != 1:
        raise EngineError(f"the graph has {len(outputs)} outputs ({', '.join(outputs)}); calibrate takes a "
                          "classifier or segmenter with one output")
    output = tensor = outputs[0]
    softmax = resize = None
    node = g.node(tensor)
    if node is not None and node.op_type == "Softmax":
        softmax = {"node": node.name, "axis": int(_attr(node, "axis", -1 if g.opset >= 13 else 1)),
                   "opset": g.opset}
        tensor, node = node.input[0], g.node(node.input[0])
    if node is not None and node.op_type in ("Resize", "Upsample"):
        resize, tensor, node = node.name, node.input[0], g.node(node.input[0])
    part = _linear(g, node)
    if part is not None:
        parts = [part]
    elif node is not None and node.op_type == "Add":  # LR-ASPP: two 1x1 convolutions summed
        parts = [p for p in (_conv1x1(g, g.node(i)) for i in node.input) if p is not None]
        if len(parts) != 2 or parts[0].weight.shape[0] != parts[1].weight.shape[0]:
            raise _not_a_classifier(g, output)
    else:
        raise _not_a_classifier(g, output)
    per_pixel = parts[0].kind == "conv"
    if resize and not per_pixel:
        raise _not_a_classifier(g, output)
    nodes = [n for p in parts for n in p.nodes] + ([node.name] if len(parts) == 2 else [])
    _check_softmax(softmax, per_pixel)
    return Head(PER_PIXEL_TASKS[per_pixel], parts, tensor, nodes, softmax, resize, output)


def _check_softmax(softmax: dict | None, per_pixel: bool) -> None:
    """A Softmax over the classes: axis 1 (or -1 on 2-D logits). Before opset 13 Softmax flattened every axis
    from `axis` on into one, the same thing on (N, K) logits but not per pixel on (N, K, H, W)."""
    if softmax is None:
        return
    axis, opset = softmax["axis"], softmax["opset"]
    if not per_pixel and axis not in (1, -1):
        raise EngineError(f"the Softmax after the classifier runs over axis {axis}, not the classes (axis 1)")
    if per_pixel and (axis != 1 or opset < 13):
        raise EngineError(f"the Softmax after the segmenter's classifier (axis {axis}, opset {opset}) is not "
                          "per pixel over the classes (axis 1 from opset 13 on)")


def _not_a_classifier(g: _Graph, output: str) -> EngineError:
    return EngineError(f"not a classifier this can calibrate: the output {output!r} comes from {g.trail(output)}; "
                       "expected a Gemm or MatMul (+ Add) before an optional Softmax, or a 1x1 Conv (two summed) "
                       "before an optional Resize")
