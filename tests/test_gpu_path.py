"""The GPU deployment path, as far as it runs without a GPU: plan header and description checks, the fp16
ONNX conversion (checked numerically on ONNX Runtime's CPU), provider selection and its refusal, and the
build command's errors. The TensorRT build and run themselves need tensorrt and a GPU and skip here."""
from __future__ import annotations

import json
import os
import struct

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import ltdeploy_cli
from helpers import build_info, description_of, fake_plan

from ltdeploy.backends.onnxruntime import check_provider, providers_for
from ltdeploy.errors import EngineError, MetadataError
from ltdeploy.gpu.builder import BatchRange
from ltdeploy.gpu.fp16 import FP16_SCOPES
from ltdeploy.gpu.plan import (
    check_plan,
    read_plan_description,
    read_plan_header,
    write_plan_description,
)
from ltdeploy.image_io import read_image
from ltdeploy.preprocess import PreprocessConfig, preprocess_image


@pytest.fixture()
def plan(models, tmp_path) -> str:
    path = fake_plan(tmp_path / "model.trt")
    write_plan_description(path, description_of(models["folded"]), build_info(path))
    return path


def test_plan_header_is_read_without_tensorrt(tmp_path):
    assert read_plan_header(fake_plan(tmp_path / "a.plan", (10, 13, 2, 6))).version == (10, 13, 2, 6)
    assert read_plan_header(fake_plan(tmp_path / "b.plan", (11, 0, 0, 1))).version_string == "11.0.0"
    prefixed = tmp_path / "c.engine"
    prefixed.write_bytes(struct.pack("<I", 120) + b'{"meta": 1}' + (tmp_path / "a.plan").read_bytes())
    layout = tmp_path / "g.plan"  # a layout word this ltdeploy does not know: not called "not a plan"
    layout.write_bytes(struct.pack("<II", 0x74727466, 2) + bytes(16) + bytes((12, 0, 0, 1)))
    for path, message in [(prefixed, "not a TensorRT plan"), (layout, "serialization layout"),
                          (fake_plan(tmp_path / "d.plan", (8, 6, 1, 0)), "TensorRT 10 and 11"),
                          (fake_plan(tmp_path / "e.plan", (9, 3, 0, 1)), "TensorRT 10 and 11")]:
        with pytest.raises(EngineError, match=message):
            read_plan_header(str(path))
    short = tmp_path / "f.plan"
    short.write_bytes(b"ftrt")
    with pytest.raises(EngineError, match="too short"):
        read_plan_header(str(short))


def test_plan_description_round_trip_and_checks(plan, models):
    desc, build = read_plan_description(plan)
    assert desc.to_dict() == description_of(models["folded"]).to_dict()
    assert build.max_batch() == 32 and build.tensors[0].shape == [-1, 3, 32, 32]
    with open(plan + ".json") as f:
        assert json.load(f)["build"]["compute_capability"] == "8.9"
    check_plan(plan, "10.13.2.6", "8.9", "NVIDIA L4")  # matching TensorRT and GPU: accepted
    with pytest.raises(EngineError, match="built on NVIDIA L4, this GPU is NVIDIA L40S; a plan runs only on the GPU "
                                          "model that built it"):
        check_plan(plan, "10.13.2.6", "8.9", "NVIDIA L40S")  # same compute capability, another model
    with pytest.raises(EngineError, match=r"built by TensorRT 10\.13\.2, this machine has TensorRT 11\.0\.1"):
        check_plan(plan, "11.0.1.4", "8.9")
    with pytest.raises(EngineError, match="compute capability 8.9 .*this GPU is 9.0"):
        check_plan(plan, "10.13.2.6", "9.0")
    with open(plan, "ab") as f:
        f.write(b"tampered")
    with pytest.raises(EngineError, match="sha256 differs"):
        check_plan(plan, "10.13.2.6", "8.9")


def test_plan_without_description_or_with_a_broken_one(tmp_path):
    bare = fake_plan(tmp_path / "bare.trt")
    with pytest.raises(MetadataError, match="no description beside the plan"):
        read_plan_description(bare)
    (tmp_path / "bare.trt.json").write_text('{"schema": "ltdeploy.gpu.plan/1", "model": {}}')
    with pytest.raises(MetadataError, match="malformed"):
        read_plan_description(bare)


def test_cli_refuses_plans_cleanly_without_tensorrt(plan, images):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here; the refusal is for machines without it")
    except ImportError:
        pass
    r = ltdeploy_cli("predict", images["good"][0], "--engine", plan)
    assert r.returncode == 2 and "tensorrt" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = ltdeploy_cli("info", "--engine", plan)  # the header and <plan>.json need no TensorRT
    assert r.returncode == 0, r.stderr
    assert "TensorRT 10.13.2 plan, fp16, built on NVIDIA L4 (compute capability 8.9)" in r.stdout
    assert "images [1, 3, 32, 32]..[32, 3, 32, 32]" in r.stdout
    assert json.loads(ltdeploy_cli("info", "--engine", plan, "--json").stdout)["build"]["precision"] == "fp16"
    r = ltdeploy_cli("predict", images["good"][0], "--engine", plan, "--device", "cpu")
    assert r.returncode == 2 and "runs on the GPU" in r.stderr


def test_build_without_tensorrt_is_one_line_and_writes_nothing(models, tmp_path):
    out = tmp_path / "m.trt"
    r = ltdeploy_cli("build", str(models["folded"]), "-o", str(out), "--fp16", "--max-batch", "16")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    assert r.returncode == 2 and "needs the `tensorrt` package" in r.stderr and "Traceback" not in r.stderr
    assert sorted(os.listdir(tmp_path)) == []
    r = ltdeploy_cli("build", str(models["folded"]), "-o", str(tmp_path / "m.bin"))
    assert r.returncode == 2 and ".trt, .engine or .plan" in r.stderr
    r = ltdeploy_cli("build", str(tmp_path / "missing.onnx"), "-o", str(out))
    assert r.returncode == 2 and "no such ONNX file" in r.stderr


def test_batch_ranges_parse_and_validate():
    assert BatchRange.parse("1:8:32") == BatchRange(1, 8, 32)
    for bad in ("8:1:32", "0:1:2", "1:8", "a:b:c"):
        with pytest.raises(EngineError):
            BatchRange.parse(bad)


def _types(model) -> dict[str, int]:
    g = onnx.shape_inference.infer_shapes(model).graph
    return {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}


def test_fp16_conversion_keeps_calibration_fp32_and_logits_close(models, digits, tmp_path):
    src, dst = str(models["folded"]), str(tmp_path / "folded.fp16.onnx")
    r = ltdeploy_cli("build", src, "-o", dst, "--fp16")
    assert r.returncode == 0, r.stderr
    model = onnx.load(dst)
    assert description_of(dst).to_dict() == description_of(src).to_dict()  # description travels along
    types = _types(model)
    half_nodes = [n for n in model.graph.node if n.op_type not in ("Cast", "Constant")
                  and any(types.get(o) == onnx.TensorProto.FLOAT16 for o in n.output)]
    assert half_nodes and all(any(s in n.name for s in FP16_SCOPES) for n in half_nodes)
    head = [n for n in model.graph.node if "/head/" in n.name]
    assert any(n.op_type == "Sigmoid" for n in head)  # the DisAlign confidence is in the graph...
    for n in head:  # ...and reads and writes fp32 only
        assert all(types.get(t, 1) != onnx.TensorProto.FLOAT16 for t in list(n.input) + list(n.output)), n.name
    desc = description_of(src)
    paths = [str(digits / line.split(" ")[0]) for line in (digits / "test.txt").read_text().split("\n")[:256]
             if line]
    x = np.stack([preprocess_image(read_image(p), desc.preprocess) for p in paths])
    a = ort.InferenceSession(src).run(None, {"images": x})[0]
    b = ort.InferenceSession(dst).run(None, {"images": x})[0]
    assert b.dtype == np.float32
    err = np.abs(a - b).max()
    assert err <= 1e-2 * np.abs(a).max() + 1e-3, err  # fp16 has 11 significant bits
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.98


def test_provider_selection_and_refusal():
    assert providers_for("cpu", "m.onnx") == ["CPUExecutionProvider"]
    assert providers_for("cuda", "m.onnx") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    trt_ep = providers_for("tensorrt", "/x/m.onnx")[0]
    assert trt_ep[0] == "TensorrtExecutionProvider" and trt_ep[1]["trt_engine_cache_path"] == "/x/m.ort-trt"
    with pytest.raises(EngineError, match="not supported"):
        providers_for("rocm", "m.onnx")
    check_provider("m.onnx", "CUDAExecutionProvider", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(EngineError, match="CUDAExecutionProvider was requested but ONNX Runtime runs "
                                          "CPUExecutionProvider"):
        check_provider("m.onnx", "CUDAExecutionProvider", ["CPUExecutionProvider"])


def test_tensorrt_provider_request_is_refused_and_reported(models, images):
    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has ONNX Runtime's TensorRT provider")
    r = ltdeploy_cli("predict", images["good"][0], "--engine", str(models["folded"]), "--device", "tensorrt")
    assert r.returncode == 2 and "TensorrtExecutionProvider was requested" in r.stderr
    r = ltdeploy_cli("predict", images["good"][0], "--engine", str(models["folded"]), "--json")
    assert json.loads(r.stdout)["provider"] == "CPUExecutionProvider"


def test_build_and_run_a_plan_on_the_gpu(models, tmp_path, images):
    """Never run here: needs tensorrt, cuda-python and an NVIDIA GPU."""
    pytest.importorskip("tensorrt", reason="tensorrt is not installed (it needs NVIDIA's libraries and a GPU)")
    pytest.importorskip("cuda", reason="cuda-python is not installed")
    plan = tmp_path / "m.trt"
    r = ltdeploy_cli("build", str(models["folded"]), "-o", str(plan), "--min-batch", "1", "--opt-batch", "4",
                     "--max-batch", "8")
    assert r.returncode == 0, r.stderr
    onnx_out = json.loads(ltdeploy_cli("predict", *images["good"], "--engine", str(models["folded"]), "--json").stdout)
    trt_out = json.loads(ltdeploy_cli("predict", *images["good"], "--engine", str(plan), "--json").stdout)
    assert trt_out["provider"].startswith("TensorRT")
    for a, b in zip(onnx_out["results"], trt_out["results"]):
        assert a["top"][0]["index"] == b["top"][0]["index"]
        assert abs(a["top"][0]["prob"] - b["top"][0]["prob"]) < 1e-3


class _FakeProfile:
    def __init__(self) -> None:
        self.shapes = {}

    def set_shape(self, name, lo, opt, hi) -> None:
        self.shapes[name] = (lo, opt, hi)


class _FakeBuilder:
    def __init__(self) -> None:
        self.made = []

    def create_optimization_profile(self):
        self.made.append(_FakeProfile())
        return self.made[-1]


class _FakeConfig:
    def add_optimization_profile(self, profile) -> int:
        return 0


class _FakeNetwork:
    def __init__(self, shape) -> None:
        self.num_inputs, self.shape = 1, shape

    def get_input(self, i):
        from types import SimpleNamespace
        return SimpleNamespace(name="images", shape=self.shape)


def test_optimization_profiles_per_batch_range_and_fitted_sizes():
    """The profile logic of the builder, on stand-ins for TensorRT's builder, config and network."""
    from ltdeploy.gpu.builder import _profiles

    builder = _FakeBuilder()
    got = _profiles(builder, _FakeConfig(), _FakeNetwork((-1, 3, -1, -1)), [BatchRange(1, 4, 8), BatchRange(16, 32, 64)],
                    ((96, 128),) * 3)
    assert got == [{"images": [[1, 3, 96, 128], [4, 3, 96, 128], [8, 3, 96, 128]]},
                   {"images": [[16, 3, 96, 128], [32, 3, 96, 128], [64, 3, 96, 128]]}]
    assert [p.shapes["images"][2] for p in builder.made] == [[8, 3, 96, 128], [64, 3, 96, 128]]
    fitted = PreprocessConfig.fit(800, 1333).shape_range()  # a detector: any fitted size up to 1333 x 1333
    detector = _profiles(_FakeBuilder(), _FakeConfig(), _FakeNetwork((1, 3, -1, -1)), [BatchRange(1, 8, 32)], fitted)
    assert detector == [{"images": [[1, 3, 16, 16], [1, 3, 800, 1067], [1, 3, 1333, 1333]]}]  # fixed batch: one
    static = _profiles(_FakeBuilder(), _FakeConfig(), _FakeNetwork((4, 3, 32, 32)), [BatchRange(1, 8, 32)],
                       ((32, 32),) * 3)
    assert static == [{"images": [[4, 3, 32, 32]] * 3}]
    with pytest.raises(EngineError, match="only the batch, height and width"):
        _profiles(_FakeBuilder(), _FakeConfig(), _FakeNetwork((-1, -1, 32, 32)), [BatchRange(1, 1, 1)], ((32, 32),) * 3)
