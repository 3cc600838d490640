"""The check for what TensorRT cannot build: it finds torchvision's mask-pasting loop, passes a loop that
keeps its shape, and the export refuses a graph that holds a growing one."""
import warnings

import onnx
import torch
from helpers import loop_model
from torchvision.models.detection.roi_heads import paste_masks_in_image

from ltdeploy.graph_check import trt_blockers


class _Paste(torch.nn.Module):
    def forward(self, masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        return paste_masks_in_image(masks, boxes, (64, 48))


def test_torchvision_mask_pasting_is_a_growing_loop(tmp_path) -> None:
    path = str(tmp_path / "paste.onnx")
    masks, boxes = torch.rand(3, 1, 28, 28), torch.tensor([[1.0, 2.0, 20.0, 30.0]] * 3)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notes (detectors need it)
        warnings.simplefilter("ignore")
        torch.onnx.export(_Paste(), (masks, boxes), path, input_names=["masks", "boxes"], opset_version=17,
                          dynamic_axes={"masks": {0: "n"}, "boxes": {0: "n"}}, dynamo=False)
    found = trt_blockers(onnx.load(path))
    assert len(found) == 1 and found[0].startswith("Loop") and "grow each iteration" in found[0]


def test_a_loop_that_keeps_its_shape_is_allowed() -> None:
    assert trt_blockers(loop_model(grow=False)) == []
    assert trt_blockers(loop_model(grow=True)) == ["Loop accumulate carries x_in, which grow each iteration"]


def test_export_refuses_a_graph_with_a_growing_loop(tmp_path, capsys) -> None:
    from export.onnx_export import verified_write

    out = tmp_path / "model.onnx"
    assert verified_write(str(out), lambda tmp: onnx.save(loop_model(grow=True), tmp) or True) == 1
    assert "TensorRT cannot build" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []
