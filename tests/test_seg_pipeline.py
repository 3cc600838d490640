"""Segmentation end to end on a tiny seg-lt: train, calibrate, export, evaluate, predict."""
import json
import os
import shutil

import cv2
import numpy as np
import pytest

from tests.conftest import SEG_CLASSES as CLASSES
from tests.conftest import ltdeploy_cli


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
    from export.onnx_export import op_counts
    for path in (paths["onnx"], paths["labels"]):
        assert not {"Loop", "Scan"} & set(op_counts(str(path)))


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


def test_ade20k_as_downloaded_end_to_end(tmp_path):
    """ADEChallengeData2016 as unpacked (JPEGs of varying size, 0 = other, objectInfo150.csv): train, calibrate,
    export, evaluate and predict; the labels PNG holds ADE20K's own values (1..K)."""
    from export.to_onnx import main as export
    from training.evaluate import main as evaluate
    from training.make_data import main as make_data
    from training.train import main as train

    data = tmp_path / "ADEChallengeData2016"
    assert make_data(["seg-lt", "--out", str(data), "--classes", "8", "--train-images", "16", "--val-images", "4",
                      "--layout", "ade20k"]) == 0
    s1, s2, onnx = (str(tmp_path / n) for n in ("stage1.pt", "disalign.pt", "disalign.onnx"))
    assert train(["stage1", "--data", str(data), "--out", s1, "--epochs", "1", "--batch-size", "8"]) == 0
    assert train(["stage2", "--checkpoint", s1, "--data", str(data), "--out", s2, "--min-steps", "10",
                  "--batch-size", "8"]) == 0
    assert export([s2, "-o", onnx, "--verify-images", "4"]) == 0
    scores = []
    for model in (s2, onnx):
        out = tmp_path / "eval.json"
        assert evaluate([model, "--data", str(data), "--json", str(out)]) == 0
        scores.append(json.loads(out.read_text()))
    assert scores[0]["mIoU"] == pytest.approx(scores[1]["mIoU"], abs=1e-4)
    assert scores[0]["class_names"][:3] == ["sky", "ground", "wall"]
    photo = sorted((data / "images" / "validation").iterdir())[1]
    res = ltdeploy_cli("predict", str(photo), "--engine", onnx, "--out", str(tmp_path / "pred"), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)["results"][0]
    labels = cv2.imread(doc["files"]["labels"], cv2.IMREAD_UNCHANGED)
    assert labels.shape == cv2.imread(str(photo)).shape[:2] == (doc["height"], doc["width"])
    assert labels.min() >= 1 and labels.max() <= 8
    top = doc["classes"][0]
    assert (labels == top["index"] + 1).mean() == pytest.approx(top["share"], abs=1e-6)


def test_same_names_from_different_folders_keep_both_outputs(seg_runs, tmp_path):
    """a/x.png and b/x.png (and a/y.png beside a/y.jpg) each keep their own files; a folder of folders is
    mirrored below --out."""
    data, paths = seg_runs
    src = sorted((data / "images" / "val").iterdir())
    inputs = tmp_path / "in"
    for folder in ("a", "b"):
        (inputs / folder).mkdir(parents=True)
    pairs = {"a/x.png": src[0], "b/x.png": src[1], "a/y.png": src[2]}
    for rel, image in pairs.items():
        shutil.copy(image, inputs / rel)
    cv2.imwrite(str(inputs / "a" / "y.jpg"), cv2.imread(str(src[3])))
    listed = [str(inputs / rel) for rel in ("a/x.png", "b/x.png", "a/y.png", "a/y.jpg")]
    res = ltdeploy_cli("predict", *listed, "--engine", str(paths["onnx"]), "--out", str(tmp_path / "out"), "--json")
    assert res.returncode == 0, res.stderr
    written = [r["files"]["labels"] for r in json.loads(res.stdout)["results"]]
    assert [os.path.relpath(f, tmp_path / "out") for f in written] == [
        "a/x_labels.png", "b/x_labels.png", "a/y_png_labels.png", "a/y_jpg_labels.png"]
    for image, labels in zip(listed[:2], written[:2]):  # each file holds its own image's prediction
        alone = ltdeploy_cli("predict", image, "--engine", str(paths["onnx"]), "--out", str(tmp_path / "one"))
        assert alone.returncode == 0
        assert np.array_equal(cv2.imread(labels, cv2.IMREAD_UNCHANGED),
                              cv2.imread(str(tmp_path / "one" / "x_labels.png"), cv2.IMREAD_UNCHANGED))
    res = ltdeploy_cli("predict", str(inputs), "--engine", str(paths["onnx"]), "--out", str(tmp_path / "tree"))
    assert res.returncode == 0, res.stderr
    assert sorted(str(p.relative_to(tmp_path / "tree")) for p in (tmp_path / "tree").rglob("*_overlay.png")) == [
        "a/x_overlay.png", "a/y_jpg_overlay.png", "a/y_png_overlay.png", "b/x_overlay.png"]
