"""The TensorRT path end to end on the fake tensorrt and host-memory CUDA (tests/fakes): what ltdeploy asks of
TensorRT (plugins, flags, profiles, callbacks, streams, clean-up) and what it tells the user when TensorRT says
no. The fakes run the graph with ONNX Runtime, so the outputs must equal ONNX Runtime's."""
from __future__ import annotations

import json
import os
import threading
import warnings

import numpy as np
import pytest
from conftest import fake_trt_env, ltdeploy_cli

from ltdeploy.errors import EngineError, InputShapeError


def _build(onnx_path, plan, **kw):
    from ltdeploy.gpu.builder import build_plan
    return build_plan(str(onnx_path), str(plan), **kw)


def test_build_registers_plugins_clears_tf32_and_writes_a_plan_trtexec_reads(fake_trt, models, tmp_path):
    from ltdeploy.gpu.plan import read_plan_description, read_plan_header

    plan = tmp_path / "m.trt"
    info = _build(models["folded"], plan)
    config = fake_trt.STATE["configs"][-1]
    assert fake_trt.STATE["plugins"] and fake_trt.BuilderFlag.TF32 not in config.flags
    assert fake_trt.STATE["network_flags"] == 0 and info.precision == "fp32" and info.extra["tf32"] is False
    assert read_plan_header(str(plan)).version_string == "10.13.2"
    desc, build = read_plan_description(str(plan))
    assert build.gpu_name == "Fake GPU" and build.profiles[0]["images"] == [[1, 3, 32, 32], [8, 3, 32, 32],
                                                                           [32, 3, 32, 32]]
    _build(models["folded"], tmp_path / "h.trt", fp16=True)  # TensorRT 10: strongly typed for the fp16 ONNX
    assert fake_trt.STATE["network_flags"] == 1 << int(fake_trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def test_plan_runs_like_onnx_runtime_with_two_profiles_and_clean_up(fake_trt, models, tmp_path):
    from cuda.bindings import runtime as fake_cuda

    from ltdeploy.backends.onnxruntime import OnnxRuntimeBackend
    from ltdeploy.backends.tensorrt import TensorRTBackend
    from ltdeploy.gpu.builder import BatchRange

    plan = tmp_path / "m.trt"
    _build(models["folded"], plan, ranges=[BatchRange(1, 2, 4), BatchRange(8, 16, 32)])
    ref = OnnxRuntimeBackend(str(models["folded"]))
    live = {k: len(v) for k, v in fake_cuda.LIVE.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # int(stream) is deprecated in cuda-bindings 13
        backend = TensorRTBackend(str(plan))
        rng = np.random.default_rng(0)
        for n in (2, 16, 3):  # profile 0, then 1, then back
            x = rng.random((n, 3, 32, 32), dtype=np.float32)
            got, want = backend.run({"images": x}), ref.run({"images": x})
            assert got["logits"].shape == (n, 10)
            np.testing.assert_allclose(got["logits"], want["logits"], atol=1e-5)
    assert backend._profile == 0 and "pageable copy" not in fake_cuda.CALLS  # pinned staging both ways
    allocator = type(backend._outputs["logits"])
    assert "reallocate_output_async" in vars(allocator) and "reallocate_output" not in vars(allocator)  # deprecated
    assert all(isinstance(s, int) for s in fake_trt.STATE["streams"])
    with pytest.raises(InputShapeError, match=r"rebuild with a larger --max-batch"):
        backend.run({"images": np.zeros((33, 3, 32, 32), np.float32)})
    with pytest.raises(InputShapeError, match="another height or width"):
        backend.run({"images": np.zeros((1, 3, 40, 40), np.float32)})
    fake_trt.STATE["refuse_profile_switch"] = True
    with pytest.raises(EngineError, match="could not switch to optimization profile 1"):
        backend.run({"images": np.zeros((16, 3, 32, 32), np.float32)})
    assert backend.gpu_time({"images": np.zeros((2, 3, 32, 32), np.float32)}) >= 0
    backend.close()
    assert {k: len(v) for k, v in fake_cuda.LIVE.items()} == live  # streams, events, device and host memory


def test_each_calling_thread_makes_the_gpu_current(fake_trt, models, tmp_path):
    from cuda.bindings import runtime as fake_cuda

    from ltdeploy.backends.tensorrt import TensorRTBackend

    plan = tmp_path / "m.trt"
    _build(models["folded"], plan)
    backend = TensorRTBackend(str(plan))
    seen = {}

    def work() -> None:
        seen["out"] = backend.run({"images": np.zeros((2, 3, 32, 32), np.float32)})["logits"].shape
        seen["thread"] = threading.get_ident()

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen["out"] == (2, 10)
    assert f"cudaSetDevice(0) in thread {seen['thread']}" in fake_cuda.CALLS


def test_predict_json_stays_parseable_while_tensorrt_warns(models, images, tmp_path):
    """In a fresh process, as a user runs it: TensorRT's warnings go to stderr, stdout is the JSON."""
    env = fake_trt_env()
    plan = tmp_path / "m.trt"
    r = ltdeploy_cli("build", str(models["folded"]), "-o", str(plan), "--max-batch", "8", env=env)
    assert r.returncode == 0, r.stderr
    assert "[TensorRT] fake TensorRT: building" in r.stderr and "[TensorRT]" not in r.stdout
    r = ltdeploy_cli("predict", *images["good"], "--engine", str(plan), "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert "[TensorRT] fake TensorRT: a warning while executing" in r.stderr
    out = json.loads(r.stdout)
    ref = json.loads(ltdeploy_cli("predict", *images["good"], "--engine", str(models["folded"]), "--json").stdout)
    assert out["provider"].startswith("TensorRT 10.13.2.6 fp32 on Fake GPU (sm_90)")
    for a, b in zip(out["results"], ref["results"]):
        assert a["top"][0]["index"] == b["top"][0]["index"] and abs(a["top"][0]["prob"] - b["top"][0]["prob"]) < 1e-5


def test_tensorrt_11_builds_without_the_removed_flags(models, tmp_path):
    env = fake_trt_env("11.0.0.9")
    r = ltdeploy_cli("build", str(models["folded"]), "-o", str(tmp_path / "m.trt"), "--fp16", env=env)
    assert r.returncode == 0, r.stderr
    r = ltdeploy_cli("info", "--engine", str(tmp_path / "m.trt"), env=env)
    assert "TensorRT 11.0.0 plan, fp16, built on Fake GPU" in r.stdout
    r = ltdeploy_cli("info", "--engine", str(tmp_path / "m.trt"), "--device", "cuda", env=fake_trt_env())
    assert r.returncode == 2 and "built by TensorRT 11.0.0, this machine has TensorRT 10.13.2.6" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_only_a_lean_runtime_is_refused_in_one_line(models, tmp_path):
    lean = tmp_path / "site" / "tensorrt_lean"
    lean.mkdir(parents=True)
    (lean / "__init__.py").write_text("__version__ = '10.13.2.6'\n")
    r = ltdeploy_cli("build", str(models["folded"]), "-o", str(tmp_path / "m.trt"),
                     env={"PYTHONPATH": str(tmp_path / "site")})
    assert r.returncode == 2 and "only tensorrt_lean is installed" in r.stderr and "Traceback" not in r.stderr


def test_set_shape_errors_become_one_line(fake_trt):
    from ltdeploy.gpu.builder import BatchRange, _profiles

    builder, config = fake_trt.Builder(None), fake_trt.IBuilderConfig()
    network = fake_trt.INetworkDefinition(0)
    network.inputs = [fake_trt._Tensor(name="images", shape=(1, 3, -1, -1), dtype=fake_trt.DataType.FLOAT)]
    with pytest.raises(EngineError, match="TensorRT refused the profile .* for input 'images'"):
        _profiles(builder, config, network, [BatchRange(1, 1, 1)], ((64, 64), (32, 32), (16, 16)))


@pytest.fixture(scope="module")
def mask_rcnn_onnx(tmp_path_factory) -> str:
    """A random-weight Lite0-FPN Mask R-CNN at 64 px with its description, exported as ltdeploy does."""
    import torch

    from export.det_export import detection_postprocess, export_detector
    from export.onnx_export import embed_description, export_description
    from ltdeploy.metadata import ModelDescription
    from ltdeploy.preprocess import PreprocessConfig
    from training.detection.model import LTDetector

    torch.manual_seed(0)
    # 10 detections an image: the mask head's cost grows with them, and what is tested is their data-dependent count
    model = LTDetector(body="lite0_fpn", num_classes=4, masks=True, detections_per_image=10).eval()
    pp = PreprocessConfig.fit(64, 64)
    desc = ModelDescription(task="detection", class_names=list("abcd"), class_counts=[50, 20, 5, 1],
                            group_thresholds=(10, 2), preprocess=pp, input_name="images",
                            output_names=["boxes", "labels", "scores", "masks"],
                            postprocess=detection_postprocess(model))
    path = str(tmp_path_factory.mktemp("maskrcnn") / "mask.onnx")
    outputs = export_detector(model, path, pp.shape_range()[1], "images")
    embed_description(path, export_description(desc, "plain", "0" * 64, outputs))
    return path


@pytest.mark.slow
def test_mask_rcnn_plan_needs_the_plugins_and_returns_data_dependent_outputs(fake_trt, mask_rcnn_onnx, tmp_path,
                                                                               monkeypatch):
    from ltdeploy.backends.onnxruntime import OnnxRuntimeBackend
    from ltdeploy.backends.tensorrt import TensorRTBackend

    plan = tmp_path / "mask.trt"
    with monkeypatch.context() as m:  # what happens without init_libnvinfer_plugins
        m.setattr(fake_trt, "init_libnvinfer_plugins", lambda logger, ns: True)
        with pytest.raises(EngineError, match=r"parser failed: node /net/roi_heads/.*RoiAlign.* \(RoiAlign\): "
                                              r"Plugin not found"):
            _build(mask_rcnn_onnx, plan)
    info = _build(mask_rcnn_onnx, plan)
    assert info.profiles == [{"images": [[1, 3, 16, 16], [1, 3, 64, 64], [1, 3, 64, 64]]}]
    backend, ref = TensorRTBackend(str(plan)), OnnxRuntimeBackend(mask_rcnn_onnx)
    rng = np.random.default_rng(1)
    counts = []
    for h, w in ((64, 48), (48, 64), (16, 16)):
        x = rng.random((1, 3, h, w), dtype=np.float32)
        got, want = backend.run({"images": x}), ref.run({"images": x})
        counts.append(len(got["scores"]))
        assert got["masks"].shape[1:] == (1, 28, 28) and len(got["masks"]) == len(got["boxes"]) == counts[-1]
        for k in want:
            np.testing.assert_allclose(got[k], want[k], atol=1e-5)
    assert max(counts) > 0
    fake_trt.STATE["plugins"] = False  # a new process that never registered them: deserialising fails ...
    monkeypatch.setattr(fake_trt, "init_libnvinfer_plugins", lambda logger, ns: True)
    with pytest.raises(EngineError, match="could not deserialize the plan .*ROIAlign_TRT"):
        TensorRTBackend(str(plan))


@pytest.mark.slow
def test_empty_detection_output(fake_trt, mask_rcnn_onnx, tmp_path):
    """A constant image gives no detection above the score threshold: zero-row outputs, no crash."""
    from ltdeploy.backends.onnxruntime import OnnxRuntimeBackend
    from ltdeploy.backends.tensorrt import TensorRTBackend

    plan = tmp_path / "mask.trt"
    _build(mask_rcnn_onnx, plan)
    x = np.zeros((1, 3, 16, 16), np.float32)
    want = OnnxRuntimeBackend(mask_rcnn_onnx).run({"images": x})
    got = TensorRTBackend(str(plan)).run({"images": x})
    assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in want.items()}


def test_build_refuses_a_graph_with_a_growing_loop(fake_trt, models, tmp_path):
    import onnx
    from helpers import loop_model

    from ltdeploy.metadata import METADATA_KEY

    model = loop_model(grow=True)
    meta = {p.key: p.value for p in onnx.load(str(models["folded"])).metadata_props}
    onnx.helper.set_model_props(model, {METADATA_KEY: meta[METADATA_KEY]})
    path = tmp_path / "loop.onnx"
    onnx.save(model, str(path))
    with pytest.raises(EngineError, match="TensorRT cannot build this graph .*Loop accumulate"):
        _build(path, tmp_path / "loop.trt")
    assert sorted(os.listdir(tmp_path)) == ["loop.onnx"]


def test_trtexec_flags_measure_the_same_thing_on_10_and_11():
    from benchmarks.gpu_figures import trtexec_flags

    ten, eleven = trtexec_flags(10), trtexec_flags(11)
    assert "--noDataTransfers" in ten and "--noCudaGraph" not in ten and "--noSpinWait" not in ten
    assert {"--noCudaGraph", "--noSpinWait"} <= set(eleven) and "--noDataTransfers" not in eleven
    assert [f for f in ten if f.startswith("--warmUp") or f.startswith("--duration")] == \
        [f for f in eleven if f.startswith("--warmUp") or f.startswith("--duration")]


def test_gpu_check_script_passes_on_host_memory(tmp_path):
    """scripts/gpu_check.py as a GPU machine runs it, here on the host-memory stand-in."""
    from conftest import PY, run

    r = run(PY, "scripts/gpu_check.py", "--host-memory", "--json", str(tmp_path / "gpu_check.json"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["ok"] and len(summary["checks"]) == 6 and all(c["ok"] for c in summary["checks"])
