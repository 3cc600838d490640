import numpy as np
import onnx
import pytest
import torch

from export.to_onnx import main as export_main
from export.to_onnx import verification_batch
from ltdeploy.backends.onnxruntime import OnnxRuntimeBackend
from ltdeploy.datasets.lists import read_split
from ltdeploy.graph_check import trt_blockers
from training import load_checkpoint, read_checkpoint


def test_load_checkpoint_api(models, digits):
    model = load_checkpoint(str(models["disalign"]))
    assert not model.training and model.calibrator is not None
    desc = read_checkpoint(str(models["disalign"])).description
    x = verification_batch(read_split(str(digits), "test").paths, 4, desc.preprocess)
    with torch.no_grad():
        assert model(torch.from_numpy(x)).shape == (4, 10)


@pytest.mark.parametrize("name", ["folded", "naive", "stage1_onnx"])
def test_exports_match_pytorch_on_whole_test_split(models, digits, name):
    ck = read_checkpoint(str(models["stage1" if name == "stage1_onnx" else "disalign"]))
    split = read_split(str(digits), "test")
    x = verification_batch(split.paths, 0, ck.description.preprocess)
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
    assert not {"Loop", "Scan"} & set(ops) and trt_blockers(graph) == []
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


def test_cosine_head_trains_calibrates_and_exports(digits, tmp_path):
    from training.train import main as train
    s1, s2, out = tmp_path / "s1.pt", tmp_path / "s2.pt", tmp_path / "cos.onnx"
    assert train(["stage1", "--data", str(digits), "--out", str(s1), "--epochs", "1", "--head", "cosine"]) == 0
    assert train(["stage2", "--checkpoint", str(s1), "--data", str(digits), "--out", str(s2),
                  "--min-steps", "20"]) == 0
    cal = read_checkpoint(str(s2)).model.calibrator
    assert not torch.equal(cal.alpha, torch.ones_like(cal.alpha))  # stage 2 really trained
    assert export_main([str(s2), "-o", str(out), "--verify-images", "0"]) == 0
    assert export_main([str(s2), "-o", str(tmp_path / "cosw.onnx"), "--fold-mode", "weights"]) == 0


def test_stage2_refuses_an_already_calibrated_checkpoint(models, digits, tmp_path, capsys):
    from training.train import main as train
    assert train(["stage2", "--checkpoint", str(models["disalign"]), "--data", str(digits),
                  "--out", str(tmp_path / "x.pt")]) == 2
    assert "already calibrated" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("name", ["resnet18", "tf_efficientnet_lite0"])
def test_other_backbones_build_and_run(name):
    from training.classification.model import LTClassifier
    model = LTClassifier(name, "linear", 5).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 5)


def test_wrong_input_shape_is_a_clear_error(models):
    from ltdeploy.errors import InputShapeError
    backend = OnnxRuntimeBackend(str(models["folded"]))
    with pytest.raises(InputShapeError, match=r"expects shape \['batch', 3, 32, 32\], got \[1, 3, 64, 64\]"):
        backend.run({"images": np.zeros((1, 3, 64, 64), np.float32)})


@pytest.mark.parametrize("method", ["disalign-magnitude", "disalign-margin", "grw-classifier", "crt", "lws",
                                    "tau-norm", "ncm", "logit-adjust"])
def test_every_method_trains_and_exports_with_parity(models, digits, tmp_path, method):
    from training.train import main as train
    ck, out = tmp_path / f"{method}.pt", tmp_path / f"{method}.onnx"
    assert train(["stage2", "--method", method, "--checkpoint", str(models["stage1"]), "--data", str(digits),
                  "--out", str(ck), "--min-steps", "20"]) == 0
    assert export_main([str(ck), "-o", str(out), "--verify-images", "0"]) == 0
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert ops.count("Gemm") == 1  # folded: one matmul for head and calibration
    assert ("Sigmoid" in ops) == method.startswith("disalign")  # every baseline is a plain Gemm
    assert OnnxRuntimeBackend(str(out)).description.calibration["method"] == method
