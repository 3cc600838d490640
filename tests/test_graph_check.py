"""The check for what TensorRT cannot build: it finds torchvision's mask-pasting loop, passes a loop that
keeps its shape, and the export refuses a graph that holds a growing one."""
import warnings

import onnx
import torch
from onnx import TensorProto, helper
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


def _loop_model(grow: bool) -> onnx.ModelProto:
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


def test_a_loop_that_keeps_its_shape_is_allowed() -> None:
    assert trt_blockers(_loop_model(grow=False)) == []
    assert trt_blockers(_loop_model(grow=True)) == ["Loop accumulate carries x_in, which grow each iteration"]


def test_export_refuses_a_graph_with_a_growing_loop(tmp_path, capsys) -> None:
    from export.to_onnx import verified_write

    out = tmp_path / "model.onnx"
    assert verified_write(str(out), lambda tmp: onnx.save(_loop_model(grow=True), tmp) or True) == 1
    assert "TensorRT cannot build" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []
