"""Segmentation end to end on a tiny seg-lt: train, calibrate, export, evaluate, predict."""
import json
import shutil

import cv2
import numpy as np
import pytest

from tests.conftest import ltdeploy_cli

CLASSES = 10


@pytest.fixture(scope="module")
def seg_runs(tmp_path_factory):
    from export.to_onnx import main as export
    from training.synthetic_seg import make_seg_lt
    from training.train import main as train

    root = tmp_path_factory.mktemp("seg")
    data, runs = root / "seg-lt", root / "runs"
    make_seg_lt(str(data), num_classes=CLASSES, n_train=32, n_val=8, imbalance=20)
    paths = {k: runs / v for k, v in {"stage1": "stage1.pt", "disalign": "disalign.pt", "onnx": "disalign.onnx",
                                     "labels": "labels.onnx"}.items()}
    assert train(["stage1", "--data", str(data), "--out", str(paths["stage1"]), "--epochs", "2",
                  "--batch-size", "8", "--hflip"]) == 0
    assert train(["stage2", "--checkpoint", str(paths["stage1"]), "--data", str(data), "--out",
                  str(paths["disalign"]), "--min-steps", "30", "--batch-size", "8"]) == 0
    assert export([str(paths["disalign"]), "-o", str(paths["onnx"])]) == 0
    assert export([str(paths["disalign"]), "-o", str(paths["labels"]), "--argmax"]) == 0
    return data, paths


def test_checkpoint_and_onnx_evaluate_to_the_same_miou(seg_runs, tmp_path):
    from training.evaluate import main as evaluate

    data, paths = seg_runs
    scores = []
    for name in ("disalign", "onnx", "labels"):
        out = tmp_path / f"{name}.json"
        assert evaluate([str(paths[name]), "--data", str(data), "--json", str(out)]) == 0
        scores.append(json.loads(out.read_text()))
    assert scores[0]["mIoU"] == pytest.approx(scores[1]["mIoU"], abs=1e-4)
    assert scores[1]["mIoU"] == pytest.approx(scores[2]["mIoU"], abs=1e-4)
    s = scores[0]
    assert 0 < s["mIoU"] <= 1 and s["head_classes"] + s["body_classes"] + s["tail_classes"] == CLASSES
    assert np.asarray(s["confusion"]).shape == (CLASSES, CLASSES)


def test_description_and_calibration_are_in_the_onnx(seg_runs):
    from ltdeploy.backends import load_backend

    _, paths = seg_runs
    desc = load_backend(str(paths["onnx"])).description
    assert desc.task == "segmentation" and desc.output_names == ["logits"]
    assert desc.calibration["method"] == "disalign" and desc.calibration["per_pixel"]
    assert set(desc.groups) <= {"head", "body", "tail"} and desc.preprocess.resize_short == 0
    assert load_backend(str(paths["labels"])).description.output_names == ["labels"]


def test_graph_takes_any_batch_and_size(seg_runs):
    from ltdeploy.backends import load_backend

    _, paths = seg_runs
    logits = load_backend(str(paths["onnx"]))
    labels = load_backend(str(paths["labels"]))
    x = np.random.default_rng(0).normal(size=(3, 3, 80, 48)).astype(np.float32)
    out = logits.run({"images": x})["logits"]
    assert out.shape == (3, CLASSES, 80, 48)
    lab = labels.run({"images": x})["labels"]
    assert lab.dtype == np.uint8 and lab.shape == (3, 80, 48)
    assert (lab == out.argmax(1)).mean() > 0.9999


def test_predict_writes_overlay_and_labels_at_the_image_size(seg_runs, tmp_path):
    data, paths = seg_runs
    img = cv2.imread(str(data / "images" / "val" / "00000.png"))
    big = tmp_path / "scene.jpg"
    cv2.imwrite(str(big), cv2.resize(img, (100, 70)))
    out_dir = tmp_path / "out"
    res = ltdeploy_cli("predict", str(big), "--engine", str(paths["onnx"]), "--out", str(out_dir), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)["results"][0]
    assert (doc["height"], doc["width"]) == (70, 100)
    assert sum(c["share"] for c in doc["classes"]) == pytest.approx(1, abs=1e-4)
    labels = cv2.imread(doc["files"]["labels"], cv2.IMREAD_UNCHANGED)
    overlay = cv2.imread(doc["files"]["overlay"])
    assert labels.shape == (70, 100) and labels.max() < CLASSES
    assert overlay.shape == (70, 100, 3)
    top = doc["classes"][0]
    assert (labels == top["index"]).mean() == pytest.approx(top["share"], abs=1e-6)


def test_labels_graph_predicts_the_same_map(seg_runs, tmp_path):
    data, paths = seg_runs
    image = str(data / "images" / "val" / "00001.png")
    maps = []
    for name in ("onnx", "labels"):
        res = ltdeploy_cli("predict", image, "--engine", str(paths[name]), "--out", str(tmp_path / name))
        assert res.returncode == 0, res.stderr
        maps.append(cv2.imread(str(tmp_path / name / "00001_labels.png"), cv2.IMREAD_UNCHANGED))
    assert np.array_equal(maps[0], maps[1])


def test_bad_image_among_good_ones_and_nothing_half_written(seg_runs, tmp_path):
    data, paths = seg_runs
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    shutil.copy(data / "images" / "val" / "00002.png", tmp_path / "00002.png")
    out_dir = tmp_path / "out"
    res = ltdeploy_cli("predict", str(tmp_path / "00002.png"), str(bad), "--engine", str(paths["onnx"]), "--out",
                       str(out_dir))
    assert res.returncode == 1
    assert "broken.png" in res.stderr and "Traceback" not in res.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["00002_labels.png", "00002_overlay.png"]


def test_stage2_refuses_a_classification_method(seg_runs, tmp_path):
    from training.train import main as train

    data, paths = seg_runs
    assert train(["stage2", "--method", "crt", "--checkpoint", str(paths["stage1"]), "--data", str(data),
                  "--out", str(tmp_path / "x.pt")]) == 2
    assert not (tmp_path / "x.pt").exists()
