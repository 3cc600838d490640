import numpy as np
import onnx
import pytest
import torch

from export.to_onnx import main as export_main
from export.to_onnx import verification_batch
from ltdeploy.backends.onnxruntime import OnnxRuntimeBackend
from training import load_checkpoint, read_checkpoint
from training.data_lists import read_split


def test_load_checkpoint_api(models, digits):
    model = load_checkpoint(str(models["disalign"]))
    assert not model.training and model.calibrator is not None
    desc = read_checkpoint(str(models["disalign"])).description
    x = verification_batch(str(digits), "test", 4, desc.preprocess)
    with torch.no_grad():
        assert model(torch.from_numpy(x)).shape == (4, 10)


@pytest.mark.parametrize("name", ["folded", "naive", "stage1_onnx"])
def test_exports_match_pytorch_on_whole_test_split(models, digits, name):
    ck = read_checkpoint(str(models["stage1" if name == "stage1_onnx" else "disalign"]))
    split = read_split(str(digits), "test")
    x = verification_batch(str(digits), "test", len(split.paths), ck.description.preprocess)
    with torch.no_grad():
        ref = ck.model(torch.from_numpy(x)).numpy()
    backend = OnnxRuntimeBackend(str(models[name]))
    out = backend.run({"images": x})["logits"]
    assert np.abs(out - ref).max() <= 1e-4
    assert (out.argmax(1) == ref.argmax(1)).all()


def test_folded_graph_has_one_gemm_no_batchnorm_and_metadata(models):
    graph = onnx.load(str(models["folded"]))
    ops = [n.op_type for n in graph.graph.node]
    assert ops.count("Gemm") == 1 and "BatchNormalization" not in ops
    naive_ops = [n.op_type for n in onnx.load(str(models["naive"])).graph.node]
    assert naive_ops.count("Gemm") == 2  # classifier and confidence apart
    backend = OnnxRuntimeBackend(str(models["folded"]))
    assert backend.description.calibration["method"] == "disalign"
    assert backend.description.calibration["folded"] == "affine"
    assert backend.description.provenance["export"]["opset"] == 17
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 32, 32]


def test_failed_parity_writes_nothing(models, tmp_path, capsys):
    out = tmp_path / "bad.onnx"
    assert export_main([str(models["disalign"]), "-o", str(out), "--tol", "-1"]) == 1
    assert "parity check failed" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_a_non_checkpoint(tmp_path, capsys):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"garbage")
    assert export_main([str(bad), "-o", str(tmp_path / "y.onnx")]) == 2
    assert "not a readable torch checkpoint" in capsys.readouterr().err
