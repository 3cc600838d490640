"""Write a model to ONNX: dynamic batch, BatchNorm folded, the model description in the metadata."""
from __future__ import annotations

import copy
import dataclasses
import datetime
import os
import sys
import tempfile
import warnings
from typing import Callable

import onnx
import torch
from torch import nn

import ltdeploy
from ltdeploy.errors import LtDeployError
from ltdeploy.files import publish
from ltdeploy.graph_check import trt_blockers
from ltdeploy.metadata import METADATA_KEY, ModelDescription

OPSET = 17


def static_same_padding(module: nn.Module, input_size: tuple[int, int]) -> nn.Module:
    """Replace timm's TF-style dynamic "same" convolutions by a fixed ZeroPad2d + Conv2d, in place.

    timm computes that padding from the input shape on every call, which traces into Shape / Gather /
    Ceil / Pad arithmetic; the exported graph has fixed H, W, so the padding can be a constant.
    """
    try:
        from timm.layers.conv2d_same import Conv2dSame
        from timm.layers.padding import pad_same_arg
    except ImportError:
        return module
    sizes: dict[str, tuple[int, int]] = {}

    def recorder(name: str):
        def hook(_module: nn.Module, inputs: tuple) -> None:
            sizes.setdefault(name, tuple(inputs[0].shape[-2:]))
        return hook
    hooks = [m.register_forward_pre_hook(recorder(name)) for name, m in module.named_modules()
             if isinstance(m, Conv2dSame)]
    if not hooks:
        return module
    with torch.no_grad():
        module(torch.zeros(1, 3, *input_size))
    for h in hooks:
        h.remove()
    for name, size in sizes.items():
        conv = module.get_submodule(name)
        plain = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0, conv.dilation,
                          conv.groups, conv.bias is not None)
        plain.load_state_dict(conv.state_dict())
        pad = pad_same_arg(list(size), list(conv.kernel_size), list(conv.stride), list(conv.dilation))
        parent, _, leaf = name.rpartition(".")
        setattr(module.get_submodule(parent) if parent else module, leaf, nn.Sequential(nn.ZeroPad2d(pad), plain))
    return module


def export_module(module: nn.Module, path: str, input_size: tuple[int, int], input_name: str,
                  output_names: list[str], dynamic_size: bool = False) -> None:
    """Trace `module` (eval mode) into ONNX at `path` with a dynamic batch axis (and dynamic height and
    width with `dynamic_size`: per-pixel outputs then have them as their last two axes).

    Uses the TorchScript exporter (dynamo=False): in eval mode it folds BatchNorm into the convolutions
    and constant-folds the calibration arithmetic, and it is the exporter torchvision's detectors need.
    """
    module = static_same_padding(copy.deepcopy(module).eval(), input_size)
    dummy = torch.zeros(2, 3, *input_size)
    axes = {input_name: {0: "batch"}, **{n: {0: "batch"} for n in output_names}}
    if dynamic_size:
        with torch.no_grad():
            outs = module(dummy)
        axes[input_name].update({2: "height", 3: "width"})
        for n, out in zip(output_names, outs if isinstance(outs, (tuple, list)) else [outs]):
            axes[n].update({out.dim() - 2: "height", out.dim() - 1: "width"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(module, (dummy,), path, input_names=[input_name], output_names=output_names,
                          dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True, dynamo=False)


def embed_description(path: str, description: ModelDescription) -> None:
    """Store the description JSON under metadata key `ltdeploy`, run the checker, save in place."""
    model = onnx.load(path)
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, description.to_json()
    model.producer_name, model.producer_version = "ltdeploy", ltdeploy.__version__
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)


def export_description(description: ModelDescription, fold: str, checkpoint_sha256: str,
                       output_names: list[str] | None = None) -> ModelDescription:
    """The checkpoint's description plus what export did (fold mode, outputs, opset, versions, source hash)."""
    calibration = dict(description.calibration, folded=fold)
    prov = dict(description.provenance, export={
        "checkpoint_sha256": checkpoint_sha256, "opset": OPSET, "torch": str(torch.__version__),
        "onnx": onnx.__version__, "ltdeploy": ltdeploy.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    return dataclasses.replace(description, output_names=output_names or description.output_names,
                               calibration=calibration, provenance=prov)


def op_counts(path: str) -> dict[str, int]:
    """How many nodes of each op type the graph holds, subgraphs (If / Loop bodies) included."""
    counts: dict[str, int] = {}

    def walk(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
            for attr in node.attribute:
                for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                    walk(sub)
    walk(onnx.load(path).graph)
    return counts


def verified_write(output: str, write: Callable[[str], bool]) -> int:
    """Run write(tmp) on a temporary file beside `output`; move it into place only if it returns True and
    the graph holds nothing TensorRT cannot build. Returns 0 on success, 1 otherwise (nothing half-written
    is left behind)."""
    out_dir = os.path.dirname(os.path.abspath(output))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".onnx.partial")
    os.close(fd)
    try:
        if not write(tmp):
            return 1
        blockers = trt_blockers(onnx.load(tmp, load_external_data=False))
        if blockers:
            print(f"error: the graph holds what TensorRT cannot build ({'; '.join(blockers)[:300]}); nothing "
                  "written", file=sys.stderr)
            return 1
        publish(tmp, output)
        return 0
    except LtDeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
