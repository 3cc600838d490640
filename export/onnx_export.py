"""Write a model to ONNX: dynamic batch, BatchNorm folded, the model description in the metadata."""
from __future__ import annotations

import datetime
import warnings

import onnx
import torch
from torch import nn

import ltdeploy
from ltdeploy.metadata import METADATA_KEY, ModelDescription

OPSET = 17


def export_module(module: nn.Module, path: str, input_size: tuple[int, int], input_name: str,
                  output_names: list[str]) -> None:
    """Trace `module` (eval mode) into ONNX at `path` with a dynamic batch axis.

    Uses the TorchScript exporter (dynamo=False): in eval mode it folds BatchNorm into the convolutions
    and constant-folds the calibration arithmetic, and it is the exporter torchvision's detectors need.
    """
    module.eval()
    dummy = torch.zeros(2, 3, *input_size)
    axes = {input_name: {0: "batch"}, **{n: {0: "batch"} for n in output_names}}
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


def export_description(description: ModelDescription, fold: str, checkpoint_sha256: str) -> ModelDescription:
    """The checkpoint's description plus what export did (fold mode, opset, versions, source hash)."""
    calibration = dict(description.calibration, folded=fold)
    prov = dict(description.provenance, export={
        "checkpoint_sha256": checkpoint_sha256, "opset": OPSET, "torch": str(torch.__version__),
        "onnx": onnx.__version__, "ltdeploy": ltdeploy.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    return ModelDescription(task=description.task, class_names=description.class_names,
                            class_counts=description.class_counts, group_thresholds=description.group_thresholds,
                            preprocess=description.preprocess, input_name=description.input_name,
                            output_names=description.output_names, calibration=calibration, provenance=prov)


def op_counts(path: str) -> dict[str, int]:
    """How many nodes of each op type the graph holds."""
    counts: dict[str, int] = {}
    for node in onnx.load(path).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts
