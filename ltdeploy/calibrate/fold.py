"""Writing a calibration into the graph, in the folded forms `export/` writes (the rows from
ltdeploy.calibrate.algebra, which training's folded heads use too):

- plain:  one Gemm (or 1x1 Conv) with the new weight and bias in place of the classifier;
- ncm:    the feature centred and L2-normalised, then a plain Gemm (its shift in the bias);
- affine: DisAlign as one Gemm (1x1 Conv) with K+1 rows [W; v], bias [b; c], split into the logits z and the
          confidence logit t; z + sigmoid(t) * ((alpha - 1) * z + beta).

The new nodes write the classifier's own logits tensor, so a Softmax or Resize after it, the graph's input and
output names, dtypes and dynamic axes all stay as they were.
"""
from __future__ import annotations

import numpy as np

from ltdeploy.calibrate.algebra import affine_rows
from ltdeploy.calibrate.fit import EPS, Calibration
from ltdeploy.calibrate.head import Head

PREFIX = "ltdeploy_calibration"


class _Writer:
    """Adds uniquely named nodes and initializers to a graph."""

    def __init__(self, model) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper, self.graph = helper, numpy_helper, model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.nodes: list = []
        self.count = 0

    def name(self, what: str) -> str:
        self.count += 1
        return f"{PREFIX}/{what}_{self.count}"

    def const(self, what: str, value: np.ndarray) -> str:
        name = self.name(what)
        self.graph.initializer.append(self.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        out = output or self.name(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=self.name(op_type), **attrs))
        return out

    def split(self, x: str, sizes: list[int], axis: int = 1) -> list[str]:
        """Split along `axis` (the sizes an input from opset 13 on, an attribute before)."""
        outs = [self.name("part") for _ in sizes]
        if self.opset >= 13:
            inputs, attrs = [x, self.const("split", np.asarray(sizes, np.int64))], {}
        else:
            inputs, attrs = [x], {"split": sizes}
        self.nodes.append(self.helper.make_node("Split", inputs, outs, name=self.name("Split"), axis=axis, **attrs))
        return outs

    def l2_normalise(self, x: str) -> str:
        """x / max(|x|, eps) over axis 1 (ReduceL2's axes an input from opset 18 on, an attribute before)."""
        if self.opset >= 18:
            norm = self.op("ReduceL2", [x, self.const("axes", np.asarray([1], np.int64))], keepdims=1)
        else:
            norm = self.op("ReduceL2", [x], axes=[1], keepdims=1)
        return self.op("Div", [x, self.op("Max", [norm, self.const("eps", np.asarray(EPS, np.float32))])])


def _linear_node(w: _Writer, head: Head, feature: str, weight: np.ndarray, bias: np.ndarray,
                 output: str | None = None) -> str:
    """feature . weight^T + bias: a Gemm for a vector feature, a 1x1 Conv for a feature map."""
    weight, bias = weight.astype(np.float32), bias.astype(np.float32)
    if not head.per_pixel:
        return w.op("Gemm", [feature, w.const("weight", weight), w.const("bias", bias)], output, transB=1)
    return w.op("Conv", [feature, w.const("weight", weight[:, :, None, None]), w.const("bias", bias)], output,
                kernel_shape=[1, 1])


def _summed(w: _Writer, head: Head, weight: np.ndarray, bias: np.ndarray, output: str | None) -> str:
    """The parts' maps summed: `weight` holds each part's columns in part order, the bias is added once."""
    outs, start, single = [], 0, len(head.parts) == 1
    for i, part in enumerate(head.parts):
        d = part.weight.shape[1]
        outs.append(_linear_node(w, head, part.feature, weight[:, start:start + d], bias if i == 0 else 0 * bias,
                                 output if single else None))
        start += d
    return outs[0] if single else w.op("Add", outs, output)


def fold_into(model, head: Head, cal: Calibration) -> dict:
    """Replace the head's nodes in `model` (a ModelProto, changed in place) by the calibration's folded form;
    returns what was written ({"form", "nodes"})."""
    w = _Writer(model)
    k = head.num_classes
    p = cal.params
    if cal.form == "plain":
        _summed(w, head, p["weight"], p["bias"], head.logits)
    elif cal.form == "ncm":
        if len(head.parts) != 1 or head.per_pixel:
            raise ValueError("NCM calibrates a classifier with one feature vector")
        centred = w.op("Sub", [head.parts[0].feature, w.const("center", p["center"].astype(np.float32)[None])])
        _linear_node(w, head, w.l2_normalise(centred), p["weight"], p["bias"], head.logits)
    else:
        stacked, bias = affine_rows(np.concatenate([q.weight for q in head.parts], 1), sum(q.bias for q in head.parts),
                                    p["v"], p["c"])
        both = _summed(w, head, stacked, bias, None)
        z, t = w.split(both, [k, 1])
        shape = (1, k, 1, 1) if head.per_pixel else (1, k)
        a1 = w.const("alpha_minus_1", (p["alpha"] - 1).astype(np.float32).reshape(shape))
        beta = w.const("beta", p["beta"].astype(np.float32).reshape(shape))
        shift = w.op("Add", [w.op("Mul", [z, a1]), beta])
        w.op("Add", [z, w.op("Mul", [w.op("Sigmoid", [t]), shift])], head.logits)
    _replace_nodes(model, set(head.nodes), w.nodes)
    return {"form": cal.form, "nodes": len(w.nodes)}


def _replace_nodes(model, old: set[str], new: list) -> None:
    """Swap the old nodes for the new ones where the first old one stood (the graph stays topologically
    sorted: the new nodes read only what the old ones read), then drop initializers nothing reads."""
    g = model.graph
    kept, placed = [], False
    for node in g.node:
        if node.name in old:
            if not placed:
                kept.extend(new)
                placed = True
            continue
        kept.append(node)
    del g.node[:]
    g.node.extend(kept)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    unused = [t for t in g.initializer if t.name not in used]
    for t in unused:
        g.initializer.remove(t)
