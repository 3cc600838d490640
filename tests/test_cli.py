import json

import onnx
import pytest
from conftest import PY, ltdeploy_cli, run


def test_predict_prints_topk_and_exits_zero(models, images):
    r = ltdeploy_cli("predict", *images["good"], "--engine", str(models["folded"]), "-k", "3")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().split("\n")
    assert len(lines) == 2 and all(line.count(",") == 2 for line in lines)
    assert lines[0].startswith(images["good"][0] + ": ")


def test_predict_json_is_parseable_and_agrees_with_evaluation(models, images, digits):
    r = ltdeploy_cli("predict", *images["good"], "--engine", str(models["folded"]), "--json", "-k", "2")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["provider"] == "CPUExecutionProvider" and doc["failures"] == []
    top = doc["results"][0]["top"]
    assert len(top) == 2 and top[0]["prob"] >= top[1]["prob"] and top[0]["group"] in ("many", "medium", "few")
    # the CLI agrees with the evaluation path (same preprocessing, same engine)
    from export.to_onnx import verification_batch
    from ltdeploy.backends.onnxruntime import OnnxRuntimeBackend
    from ltdeploy.datasets.lists import read_split
    backend = OnnxRuntimeBackend(str(models["folded"]))
    paths = read_split(str(digits), "test").paths
    logits = backend.run({"images": verification_batch(paths, 2, backend.description.preprocess)})
    assert [res["top"][0]["index"] for res in doc["results"]] == logits["logits"].argmax(1).tolist()


def test_grayscale_rgba_16bit_are_predicted_like_the_original(models, images):
    d = images["dir"]
    r = ltdeploy_cli("predict", images["good"][0], str(d / "gray.png"), str(d / "rgba.png"), str(d / "deep.png"),
                     "--engine", str(models["folded"]), "--json", "-k", "1")
    assert r.returncode == 0, r.stderr
    probs = [res["top"][0] for res in json.loads(r.stdout)["results"]]
    assert len({p["name"] for p in probs}) == 1
    assert max(p["prob"] for p in probs) - min(p["prob"] for p in probs) < 1e-5


def test_one_bad_file_among_good_ones(models, images):
    d = images["dir"]
    r = ltdeploy_cli("predict", images["good"][0], str(d / "cut.jpg"), images["good"][1], str(d / "missing.png"),
                     "--engine", str(models["folded"]))
    assert r.returncode == 1
    assert [line.split(":")[0] for line in r.stdout.strip().split("\n")] == images["good"]
    err = r.stderr.strip().split("\n")
    assert "truncated JPEG" in err[0] and "no such file" in err[1] and "2 of 4 images failed" in err[2]
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("target, message", [
    ("text.png", "not a decodable image"),
    ("cut.jpg", "truncated JPEG"),
    ("missing.png", "no such file"),
])
def test_bad_images_give_one_line_and_exit_one(models, images, target, message):
    r = ltdeploy_cli("predict", str(images["dir"] / target), "--engine", str(models["folded"]))
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_directory_of_images_is_expanded(models, images, tmp_path):
    for i, p in enumerate(images["good"]):
        (tmp_path / f"{i}.png").write_bytes(open(p, "rb").read())
    r = ltdeploy_cli("predict", str(tmp_path), "--engine", str(models["folded"]))
    assert r.returncode == 0 and len(r.stdout.strip().split("\n")) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    r = ltdeploy_cli("predict", str(empty), "--engine", str(models["folded"]))
    assert r.returncode == 2 and "holds no images" in r.stderr


def test_bad_engines(models, images, tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 10)
    bare = tmp_path / "bare.onnx"
    m = onnx.load(str(models["folded"]))
    del m.metadata_props[:]
    onnx.save(m, str(bare))
    broken_meta = tmp_path / "meta.onnx"
    m.metadata_props.add(key="ltdeploy", value='{"schema": "ltdeploy.model/0"}')
    onnx.save(m, str(broken_meta))
    cases = [(tmp_path / "none.onnx", "no such engine file"), (corrupt, "not a loadable ONNX model"),
             (bare, "has no ltdeploy description"), (broken_meta, "schema"),
             (tmp_path / "model.pth", "unknown engine kind")]
    for engine, message in cases:
        r = ltdeploy_cli("predict", images["good"][0], "--engine", str(engine))
        assert r.returncode == 2, (engine, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().split("\n")) == 1


def test_tensorrt_plan_without_tensorrt_is_a_clear_error(images, tmp_path):
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"ftrt" + bytes(60))
    r = ltdeploy_cli("predict", images["good"][0], "--engine", str(plan))
    assert r.returncode == 2 and "TensorRT" in r.stderr and "Traceback" not in r.stderr


def test_info(models):
    r = ltdeploy_cli("info", "--engine", str(models["folded"]))
    assert r.returncode == 0
    assert "classification, 10 classes" in r.stdout and '"method": "disalign"' in r.stdout
    doc = json.loads(ltdeploy_cli("info", "--engine", str(models["folded"]), "--json").stdout)
    assert doc["preprocess"]["input_size"] == [32, 32] and len(doc["class_counts"]) == 10


def test_cuda_request_without_cuda_provider_is_refused(models, images):
    """ONNX Runtime silently falls back to CPU when CUDA is missing; we must say so and stop."""
    import onnxruntime
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has a CUDA provider")
    r = ltdeploy_cli("predict", images["good"][0], "--engine", str(models["folded"]), "--device", "cuda")
    assert r.returncode == 2 and "CUDAExecutionProvider was requested" in r.stderr and "Traceback" not in r.stderr


def _png_bomb(path, side: int = 20000) -> None:
    """A real 8-bit grey PNG of side x side zeros, streamed through zlib (a few hundred KB on disk)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    z = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte 0, then the row
    body = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def test_decompression_bomb_is_refused_before_decoding(models, images, tmp_path):
    bomb = tmp_path / "bomb.png"
    _png_bomb(bomb)
    assert bomb.stat().st_size < 1_000_000
    r = run(PY, "-c", MEMORY_PROBE.format(args=["predict", str(bomb), images["good"][0], "--engine",
                                                 str(models["folded"])]))
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert lines[0].startswith(f"error: {bomb}: 20000 x 20000 = 400,000,000 pixels, above the limit of 100,000,000")
    assert "1 of 2 images failed" in lines[-1] and "Traceback" not in r.stderr
    assert r.stdout.splitlines()[0].startswith(images["good"][0])  # the good image still predicted
    peak_mb = int(r.stdout.splitlines()[-1]) / 1024
    assert peak_mb < 600  # decoding it would have taken 400 MB on top of the interpreter
    small = ltdeploy_cli("predict", images["good"][0], "--engine", str(models["folded"]), "--max-pixels", "50")
    assert small.returncode == 1 and "8 x 8 = 64 pixels, above the limit of 50 " in small.stderr


MEMORY_PROBE = """
import sys
from ltdeploy.cli import main
sys.argv = ["ltdeploy", *{args!r}]
try:
    main()
except SystemExit:
    pass
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")))  # peak RSS, kB
"""


def test_many_images_show_progress_on_stderr_and_keep_stdout_json(models, digits, tmp_path):
    import shutil
    folder = tmp_path / "many" / "sub"
    folder.mkdir(parents=True)
    lines = (digits / "test.txt").read_text().split("\n")[:40]
    for i, line in enumerate(lines):
        shutil.copy(digits / line.split(" ")[0], folder / f"{i:02d}.png")
    r = ltdeploy_cli("predict", str(tmp_path / "many"), "--engine", str(models["folded"]), "--json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["results"]) == 40  # subfolders searched; stdout is the JSON alone
    assert "predict" in r.stderr
