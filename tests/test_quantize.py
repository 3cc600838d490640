"""`ltdeploy quantize`: class-balanced calibration sets, a QDQ graph with only the feature extractor in int8,
the record the INT8 model carries, its accuracy against fp32, the TensorRT build flags, and bad input."""
import json
import os

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from ltdeploy.cli import cli
from ltdeploy.quantize.sampling import balanced_choice, instance_choice


def quantize(*args: str):
    return CliRunner().invoke(cli, ["quantize", *args])


@pytest.fixture(scope="module")
def int8(models, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "folded.int8.onnx"
    cwd, here = os.getcwd(), tmp_path_factory.mktemp("cwd")
    os.chdir(here)  # the quantization tool's temporary models must never land where the user stands
    try:
        r = quantize(str(models["folded"]), "-o", str(out), "--calib", str(digits), "--calib-images", "32")
    finally:
        os.chdir(cwd)
    assert r.exit_code == 0, r.output
    assert list(here.iterdir()) == [] and sorted(p.name for p in out.parent.iterdir()) == [out.name]
    return out


def test_balanced_choice_gives_every_class_a_turn_rarest_first():
    rng = np.random.default_rng(0)
    shown = [{0}] * 50 + [{1}] * 5 + [{2}] * 2 + [{0, 2}]
    counts = [500, 50, 3]
    chosen = balanced_choice(shown, counts, 6, rng)
    assert len(chosen) == len(set(chosen)) == 6
    first_round = [shown[i] for i in chosen[:3]]
    assert 2 in first_round[0] and 1 in first_round[1] and 0 in first_round[2]  # rarest class first
    assert sum(2 in shown[i] for i in chosen) >= 2 and sum(1 in shown[i] for i in chosen) == 2  # a turn a round
    assert len(balanced_choice(shown, counts, 500, rng)) == len(shown)  # never more than there are
    assert instance_choice(10, 4, np.random.default_rng(1)) == instance_choice(10, 4, np.random.default_rng(1))


def test_int8_graph_records_its_calibration_and_keeps_the_head_float(int8, models):
    model = onnx.load(str(int8))
    desc = json.loads({p.key: p.value for p in model.metadata_props}["ltdeploy"])
    p = desc["precision"]
    assert (p["weights"], p["format"], p["method"], p["scope"]) == ("int8", "QDQ", "minmax", "features")
    assert (p["target"], p["activations"], p["symmetric"], p["weight_bits"]) == ("cpu", "uint8", False, 7)
    assert p["calibration"]["images"] == 32 and p["calibration"]["sampling"] == "balanced"
    assert p["calibration"]["classes_covered"] == 10 and len(p["calibration"]["list_sha256"]) == 64
    producer = {o: n for n in model.graph.node for o in n.output}
    quantized = [n.name for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert quantized and all("/backbone/" in name or name == "images_QuantizeLinear" for name in quantized)
    head = [n for n in model.graph.node if n.name.startswith("/head/")]
    assert {"Gemm", "Sigmoid", "Mul", "Add"} <= {n.op_type for n in head}
    for node in head:  # float weights and float calibration math; only the feature vector arrives dequantized
        reads = node.input[1:] if node.op_type == "Gemm" else node.input
        assert all(producer.get(i) is None or producer[i].op_type != "DequantizeLinear" for i in reads), node.name
    r = CliRunner().invoke(cli, ["info", "--engine", str(int8)])
    assert r.exit_code == 0 and "int8 weights / uint8 activations for cpu" in r.output


def test_int8_predicts_like_fp32(int8, models, digits):
    from ltdeploy.evaluation.classification import engine_logits
    from ltdeploy.predictor import Predictor

    paths = [str(digits / line.split(" ")[0]) for line in (digits / "test.txt").read_text().split("\n") if line]
    full, low = (engine_logits(Predictor(str(m)), paths[:200]) for m in (models["folded"], int8))
    assert (full.argmax(1) == low.argmax(1)).mean() >= 0.9
    assert np.abs(full - low).max() > 0  # it really is another graph


def test_scope_all_quantizes_more_and_a_folder_calibrates(models, images, tmp_path):
    out = tmp_path / "all.int8.onnx"
    r = quantize(str(models["folded"]), "-o", str(out), "--calib", str(images["dir"]), "--scope", "all",
                 "--method", "percentile")
    # the folder holds broken files too: calibration stops at the first one it cannot decode
    assert r.exit_code == 2 and len(r.output.strip().splitlines()[-1:]) == 1 and not out.exists()
    good = tmp_path / "good"
    good.mkdir()
    for i, path in enumerate(images["good"]):
        (good / f"{i}.png").write_bytes(open(path, "rb").read())
    r = quantize(str(models["folded"]), "-o", str(out), "--calib", str(good), "--scope", "all")
    assert r.exit_code == 0, r.output
    record = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["ltdeploy"])["precision"]
    assert record["calibration"]["source"] == "folder" and record["calibration"]["images"] == 2
    quantized = [n.name for n in onnx.load(str(out)).graph.node if n.op_type == "QuantizeLinear"]
    assert any(not name.startswith("/backbone/") for name in quantized)


def test_bad_input_is_one_line_and_writes_nothing(models, int8, seg_runs, tmp_path):
    data, _ = seg_runs
    out = tmp_path / "q.onnx"
    cases = [
        ([str(models["folded"]), "--calib", str(tmp_path / "missing")], "no such calibration folder"),
        ([str(models["folded"]), "--calib", str(data)], "segmentation dataset"),
        ([str(int8), "--calib", str(data)], "already int8"),
        ([str(tmp_path / "none.onnx"), "--calib", str(data)], "no such ONNX file"),
    ]
    for args, message in cases:
        r = quantize(*args, "-o", str(out))
        assert r.exit_code == 2, (args, r.output)
        error = [line for line in r.output.splitlines() if line.startswith("error:")]
        assert len(error) == 1 and message in error[0], (args, r.output)
        assert not out.exists()
    r = quantize(str(models["folded"]), "-o", str(models["folded"]), "--calib", str(data))
    assert r.exit_code == 2 and "would overwrite" in r.output


def test_int8_plan_is_strongly_typed_without_precision_flags(fake_trt, int8, models, digits, tmp_path):
    from ltdeploy.errors import EngineError
    from ltdeploy.gpu.builder import build_plan

    with pytest.raises(EngineError, match="--target tensorrt"):  # uint8, asymmetric: not what TensorRT takes
        build_plan(str(int8), str(tmp_path / "cpu.trt"))
    assert not (tmp_path / "cpu.trt").exists()
    trt_int8 = tmp_path / "folded.trt.int8.onnx"
    r = quantize(str(models["folded"]), "-o", str(trt_int8), "--calib", str(digits), "--calib-images", "8",
                 "--target", "tensorrt")
    assert r.exit_code == 0, r.output
    model = onnx.load(str(trt_int8))
    zero_points = [i for i in model.graph.initializer if i.name.endswith("_zero_point")]
    assert zero_points and onnx.TensorProto.UINT8 not in {i.data_type for i in zero_points}  # int8 (int32: biases)
    assert all(not onnx.numpy_helper.to_array(i).any() for i in zero_points)  # symmetric: zero point 0
    info = build_plan(str(trt_int8), str(tmp_path / "m.trt"))
    config = fake_trt.STATE["configs"][-1]
    assert info.precision == "int8" and info.extra["strongly_typed"]
    assert fake_trt.STATE["network_flags"] == 1 << int(fake_trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert fake_trt.BuilderFlag.INT8 not in config.flags and fake_trt.BuilderFlag.FP16 not in config.flags
    with pytest.raises(EngineError, match="without --fp16"):
        build_plan(str(trt_int8), str(tmp_path / "h.trt"), fp16=True)


def test_conv_profile_splits_engine_time_by_kind_of_convolution(int8, models, capsys):
    from benchmarks.conv_profile import KINDS, main, profile

    fp32 = profile(str(models["folded"]), batch=2, threads=1, runs=5)
    assert set(fp32) == {*KINDS, "run"} and fp32["stem"] > 0 and fp32["pointwise / full"] > 0
    assert fp32["depthwise"] == 0  # the small CNN has none
    assert sum(fp32[k] for k in KINDS) <= fp32["run"]  # node kernels inside the session run
    assert main(["--engine", str(models["folded"]), "--engine", str(int8), "--runs", "3", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].endswith("| ratio 2 |") and len(lines) == 3 + len(KINDS) + 1
