"""Triton: the repository `ltdeploy export-triton` writes (configs parsed back with Triton's own schema,
files in place, all-or-nothing), and a real round trip through the tritonserver of the nvidia-pytriton
wheel (Python backend, CPU) in the torch-free environment `make triton-env` builds."""
from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tritonclient.http
from conftest import ltdeploy_cli
from helpers import TRITON_PYTHON, build_info, description_of, fake_plan, model_config_schema, parse_config

from ltdeploy.files import file_sha256
from ltdeploy.gpu.plan import write_plan_description


@pytest.fixture(scope="module")
def triton_python() -> str:
    if not os.path.isfile(TRITON_PYTHON):
        pytest.skip(f"no Triton serving environment at {TRITON_PYTHON}: run `make triton-env`")
    from benchmarks.local_triton import server_files
    from ltdeploy.errors import EngineError
    try:
        server_files(python=TRITON_PYTHON)
    except EngineError as exc:
        pytest.skip(str(exc))
    return TRITON_PYTHON


def test_native_repository_for_onnx(models, tmp_path):
    repo = tmp_path / "repo"
    r = ltdeploy_cli("export-triton", "--engine", str(models["folded"]), "--repo", str(repo), "--name", "digits",
                     "--max-batch", "16", "--instances", "2")
    assert r.returncode == 0, r.stderr
    engine = parse_config(repo / "digits_engine" / "config.pbtxt")
    assert engine.platform == "onnxruntime_onnx" and engine.max_batch_size == 16
    assert [(t.name, list(t.dims)) for t in engine.input] == [("images", [3, 32, 32])]
    assert [(t.name, list(t.dims)) for t in engine.output] == [("logits", [10])]
    assert engine.instance_group[0].count == 2 and engine.instance_group[0].kind == engine.instance_group[0].KIND_CPU
    assert list(engine.dynamic_batching.preferred_batch_size) == [4, 8, 16]
    front = parse_config(repo / "digits" / "config.pbtxt")
    assert front.backend == "python" and front.max_batch_size == 16
    assert front.parameters["engine_model"].string_value == "digits_engine"
    schema = model_config_schema()
    assert [(t.name, t.data_type) for t in front.input] == [("IMAGE", schema.DESCRIPTOR.file.enum_types_by_name[
        "DataType"].values_by_name["TYPE_STRING"].number)]
    assert file_sha256(str(repo / "digits_engine" / "1" / "model.onnx")) == file_sha256(str(models["folded"]))
    desc = json.loads((repo / "digits" / "1" / "description.json").read_text())
    assert desc == json.loads(description_of(models["folded"]).to_json())
    assert (repo / "digits" / "1" / "model.py").read_text().count("ltdeploy.triton.model") == 2
    assert sorted(os.listdir(repo)) == ["digits", "digits_engine"]  # no staging folder left
    r = ltdeploy_cli("export-triton", "--engine", str(models["folded"]), "--repo", str(repo), "--name", "digits")
    assert r.returncode == 2 and "--overwrite" in r.stderr


def test_repository_for_a_plan_keeps_it_byte_identical(models, tmp_path):
    plan = fake_plan(tmp_path / "m.plan")
    write_plan_description(plan, description_of(models["folded"]), build_info(plan))
    repo = tmp_path / "repo"
    r = ltdeploy_cli("export-triton", "--engine", plan, "--repo", str(repo), "--max-batch", "32")
    assert r.returncode == 0, r.stderr
    engine = parse_config(repo / "m_engine" / "config.pbtxt")
    assert engine.platform == "tensorrt_plan" and engine.max_batch_size == 32
    assert engine.instance_group[0].kind == engine.instance_group[0].KIND_GPU
    assert (repo / "m_engine" / "1" / "model.plan").read_bytes() == Path(plan).read_bytes()
    assert (repo / "m_engine" / "1" / "model.plan.json").is_file()
    r = ltdeploy_cli("export-triton", "--engine", plan, "--repo", str(tmp_path / "repo2"), "--max-batch", "64")
    assert r.returncode == 2 and "profile maximum 32" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "repo2").exists() or os.listdir(tmp_path / "repo2") == []
    r = ltdeploy_cli("export-triton", "--engine", plan, "--repo", str(tmp_path / "repo3"), "--kind", "cpu")
    assert r.returncode == 2 and "KIND_GPU" in r.stderr


@pytest.mark.slow
def test_round_trip_through_tritonserver(models, images, triton_python, tmp_path):
    from benchmarks.local_triton import LocalTriton
    from ltdeploy.triton.client import connect, infer_images

    repo = tmp_path / "repo"
    r = ltdeploy_cli("export-triton", "--engine", str(models["folded"]), "--repo", str(repo), "--name", "digits",
                     "--layout", "python", "--topk", "3")
    assert r.returncode == 0, r.stderr
    local = json.loads(ltdeploy_cli("predict", *images["good"], "--engine", str(models["folded"]), "--json",
                                    "-k", "3").stdout)["results"]
    payload = [Path(p).read_bytes() for p in images["good"]] + [b"not an image"]
    with LocalTriton(str(repo), triton_python) as server:
        client = connect(server.url)
        served = infer_images(client, "digits", payload)
        assert [s["top"] for s in served[:2]] == [lo["top"] for lo in local]  # same classes, same probabilities
        assert "not a decodable image" in served[2]["error"]

        def one(_: int) -> bool:
            return len(infer_images(connect(server.url), "digits", payload[:1])[0]["top"]) == 3

        with ThreadPoolExecutor(4) as pool:
            assert all(pool.map(one, range(40)))  # concurrent clients, dynamic batching, no errors


@pytest.mark.slow
def test_stub_runs_with_the_interpreters_own_libpython(triton_python, tmp_path):
    """multiprocessing's resource tracker calls RLock._recursion_count, which exists only when the stub's
    libpython matches the environment's standard library (the failure the issue reported)."""
    from benchmarks.local_triton import LocalTriton

    model = tmp_path / "repo" / "shm"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(
        'name: "shm"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "X", data_type: TYPE_FP32, dims: [ 2 ] } ]\n'
        'output [ { name: "Y", data_type: TYPE_FP32, dims: [ 2 ] } ]\n')
    (model / "1" / "model.py").write_text(
        "import triton_python_backend_utils as pb_utils\n"
        "from multiprocessing import shared_memory\n"
        "class TritonPythonModel:\n"
        "    def initialize(self, args):\n"
        "        self.shm = shared_memory.SharedMemory(create=True, size=64)\n"
        "    def execute(self, requests):\n"
        "        return [pb_utils.InferenceResponse([pb_utils.Tensor('Y', pb_utils.get_input_tensor_by_name(r, 'X')"
        ".as_numpy() * 2)]) for r in requests]\n"
        "    def finalize(self):\n"
        "        self.shm.close(); self.shm.unlink()\n")
    import numpy as np
    with LocalTriton(str(tmp_path / "repo"), triton_python) as server:
        client = tritonclient.http.InferenceServerClient(server.url)
        x = tritonclient.http.InferInput("X", [2], "FP32")
        x.set_data_from_numpy(np.array([1.5, -2.0], dtype=np.float32))
        assert client.infer("shm", [x]).as_numpy("Y").tolist() == [3.0, -4.0]


def test_missing_server_is_a_clear_error(tmp_path):
    from benchmarks.local_triton import LocalTriton
    from ltdeploy.errors import EngineError

    with pytest.raises(EngineError, match="no tritonserver found"):
        LocalTriton(str(tmp_path), sys.executable, root=str(tmp_path))


@pytest.mark.slow
def test_load_benchmark_reports_latency_and_the_server_split(models, images, triton_python, tmp_path, capsys):
    """benchmarks/triton_load.py, shortest run: every request answered, figures written."""
    from benchmarks.triton_load import main

    out = tmp_path / "load.json"
    assert main(["--engine", str(models["folded"]), "--images", *images["good"], "--requests", "6",
                 "--concurrency", "2", "--python", triton_python, "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["client"]["requests"] == 6 and doc["client"]["errors"] == 0
    assert doc["client"]["p50_ms"] > 0 and "compute_infer_ms" in doc["server_per_request"]
