"""Detection end to end on tiny det-lt: stage 1 with PCB and RFS, stage 2 DisAlign, export with NMS in the
graph (parity), ONNX = PyTorch AP, and ltdeploy predict (drawn image, COCO JSON, bad input)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from export.det_export import match_detections
from ltdeploy.cli import cli
from training.checkpoint import read_checkpoint, save_checkpoint
from training.det_evaluate import evaluate_detection
from training.make_data import main as make_data
from training.train import main as train_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def det_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("detrun")
    data = str(base / "det-lt")
    assert make_data(["det-lt", "--out", data, "--classes", "8", "--train-images", "16", "--val-images", "6",
                      "--size", "64"]) == 0
    s1, s2 = str(base / "pcb.pt"), str(base / "pcb_disalign.pt")
    common = ["--data", data, "--batch-size", "4", "--warmup", "2"]
    assert train_main(["stage1", *common, "--out", s1, "--epochs", "2", "--pcb", "--pcb-start", "0",
                       "--input-size", "64", "--rfs", "0.5", "--hflip", "--loss-log", str(base / "loss.json")]) == 0
    assert train_main(["stage2", *common, "--checkpoint", s1, "--out", s2, "--epochs", "1"]) == 0
    return {"base": base, "data": data, "stage1": s1, "stage2": s2}


def test_stage1_switches_pcb_on_once_every_class_was_seen(det_run: dict) -> None:
    ck = read_checkpoint(det_run["stage1"])
    epochs = ck.history["stage1"]["epochs"]
    assert [e["pcb"] for e in epochs] == [False, True]  # epoch 0: the confusion matrix is still filling
    heads = ck.model.net.roi_heads
    assert bool(heads.confusion.seen.all())
    assert torch.allclose(heads.confusion.matrix.sum(1), torch.ones(8))
    with open(det_run["base"] / "loss.json") as f:
        curve = json.load(f)
    assert curve["world_size"] == 1 and len(curve["iterations"]) >= 2 and all(np.isfinite(curve["iterations"]))
    assert ck.description.task == "detection" and ck.description.group_names == ("frequent", "common", "rare")


def test_stage2_changes_only_the_calibrator(det_run: dict) -> None:
    one, two = read_checkpoint(det_run["stage1"]), read_checkpoint(det_run["stage2"])
    a, b = one.model.state_dict(), two.model.state_dict()
    extra = set(b) - set(a)
    assert extra == {f"net.roi_heads.box_predictor.calibrator.{n}"
                     for n in ("alpha", "beta", "confidence.weight", "confidence.bias")}
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.allclose(b["net.roi_heads.box_predictor.calibrator.alpha"], torch.ones(8))
    assert two.description.calibration["counts"] == "instances"


@pytest.fixture(scope="module")
def det_onnx(det_run: dict) -> str:
    """The stage-2 model with a decisive random classifier (no score ties for NMS to break either way),
    exported through export/to_onnx.py with its parity check."""
    ck = read_checkpoint(det_run["stage2"])
    torch.manual_seed(1)
    with torch.no_grad():
        ck.model.branch.predictor.cls_score.weight.normal_(0, 0.3)
    sharp = str(det_run["base"] / "sharp.pt")
    save_checkpoint(sharp, ck.model, ck.description, {})
    out = str(det_run["base"] / "det.onnx")
    r = subprocess.run([sys.executable, "export/to_onnx.py", sharp, "-o", out, "--verify-images", "6"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-500:]
    assert "unmatched 0" in r.stdout and "NonMaxSuppression 2" in r.stdout  # RPN and per-class NMS
    det_run["sharp"] = sharp
    return out


def test_onnx_ap_equals_pytorch_ap(det_run: dict, det_onnx: str) -> None:
    pt = evaluate_detection(det_run["sharp"], det_run["data"])
    ox = evaluate_detection(det_onnx, det_run["data"])
    assert pt["detections"] > 0
    for k in ("AP", "AP50", "APr", "APc"):
        assert abs(pt["box"][k] - ox["box"][k]) <= 0.1
    assert ox["description"].calibration["folded"] == "affine"


def test_match_detections_pairs_by_label_and_box() -> None:
    ref = {"boxes": np.array([[0, 0, 10, 10], [5, 5, 20, 20]], np.float32), "labels": np.array([1, 2]),
           "scores": np.array([0.9, 0.8], np.float32)}
    swapped = {k: v[::-1].copy() for k, v in ref.items()}
    assert match_detections(ref, swapped) == (0, 0.0, 0.0, 0.0)
    moved = dict(swapped, boxes=swapped["boxes"] + np.float32(0.5))
    assert match_detections(ref, moved)[1] == pytest.approx(0.5)
    relabelled = dict(swapped, labels=np.array([3, 1]))
    assert match_detections(ref, relabelled)[0] == 2  # one reference and one ONNX detection left unpaired


def test_predict_draws_and_writes_coco_json(det_run: dict, det_onnx: str, tmp_path) -> None:
    img = os.path.join(det_run["data"], "images", "val", "000000.png")
    big = str(tmp_path / "big.jpg")
    cv2.imwrite(big, cv2.resize(cv2.imread(img), (100, 80)))
    out = str(tmp_path / "pred")
    r = CliRunner().invoke(cli, ["predict", big, "--engine", det_onnx, "--out", out, "--score-threshold", "0.01",
                                 "--max-detections", "5", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    res = doc["results"][0]
    assert (res["width"], res["height"]) == (100, 80)
    dets = res["detections"]
    assert 0 < len(dets) <= 5 and [d["score"] for d in dets] == sorted((d["score"] for d in dets), reverse=True)
    for d in dets:
        assert set(d) >= {"image_id", "category_id", "bbox", "score", "category_name", "group"}
        x, y, w, h = d["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 100.01 and y + h <= 80.01 and 1 <= d["category_id"] <= 8
    drawn = cv2.imread(res["files"]["image"])
    assert drawn.shape == (80, 100, 3)


def test_predict_bad_image_exits_1_without_partial_files(det_onnx: str, det_run: dict, tmp_path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    good = str(tmp_path / "000001.png")
    shutil.copy(os.path.join(det_run["data"], "images", "val", "000001.png"), good)
    out = tmp_path / "pred"
    r = CliRunner().invoke(cli, ["predict", str(bad), good, "--engine", det_onnx, "--out", str(out)])
    assert r.exit_code == 1
    assert sorted(os.listdir(out)) == ["000001_det.png"]


def test_mask_rcnn_exports_and_predicts_masks(tmp_path, det_run: dict) -> None:
    """Mask R-CNN: masks pasted in the graph match PyTorch's, and predict writes COCO RLE masks."""
    s1 = str(tmp_path / "mask.pt")
    assert train_main(["stage1", "--data", det_run["data"], "--out", s1, "--epochs", "1", "--masks",
                       "--batch-size", "4", "--input-size", "64", "--warmup", "2"]) == 0
    ck = read_checkpoint(s1)
    torch.manual_seed(1)
    with torch.no_grad():
        ck.model.branch.predictor.cls_score.weight.normal_(0, 0.3)
    save_checkpoint(s1, ck.model, ck.description, {})
    out = str(tmp_path / "mask.onnx")
    r = subprocess.run([sys.executable, "export/to_onnx.py", s1, "-o", out, "--verify-images", "2"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0 and "unmatched 0" in r.stdout, r.stderr[-500:]
    img = os.path.join(det_run["data"], "images", "val", "000000.png")
    r = CliRunner().invoke(cli, ["predict", img, "--engine", out, "--score-threshold", "0.05", "--max-detections",
                                 "3", "--json", "--no-save"])
    assert r.exit_code == 0, r.output
    det = json.loads(r.output)["results"][0]["detections"][0]
    rle = det["segmentation"]
    assert rle["size"] == [64, 64] and sum(rle["counts"]) == 64 * 64


def test_fp16_detector_keeps_its_detections_and_ap(det_run: dict, det_onnx: str, tmp_path) -> None:
    """fp16 goes into the backbone only: NMS, box decoding and the calibrated RoI head stay fp32."""
    from ltdeploy.backends import load_backend
    from ltdeploy.fp16 import convert_to_fp16
    from ltdeploy.image_io import read_image
    from ltdeploy.preprocess import preprocess_image

    half = str(tmp_path / "det.fp16.onnx")
    counts = convert_to_fp16(det_onnx, half)
    assert counts["fp16_nodes"] > 50
    full, low = load_backend(det_onnx), load_backend(half)
    desc, paired, total = full.description, 0, 0
    for name in sorted(os.listdir(os.path.join(det_run["data"], "images", "val"))):
        x = preprocess_image(read_image(os.path.join(det_run["data"], "images", "val", name)), desc.preprocess)[None]
        a, b = ({k: v[r["scores"] >= 0.05] for k, v in r.items()}
                for r in (full.run({desc.input_name: x}), low.run({desc.input_name: x})))
        total += len(a["scores"])
        paired += len(a["scores"]) - match_detections(a, b)[0] // 2
    assert total > 0 and paired / total >= 0.98
    ap_full, ap_low = evaluate_detection(det_onnx, det_run["data"]), evaluate_detection(half, det_run["data"])
    assert abs(ap_full["box"]["AP"] - ap_low["box"]["AP"]) <= 0.1 and abs(ap_full["box"]["APr"] - ap_low["box"]["APr"]) <= 0.1


def test_triton_repository_for_the_detector(det_onnx: str, det_run: dict, tmp_path) -> None:
    """Detectors take one image: the engine model has max_batch_size 0 and full dims, outputs of any length;
    served through tritonserver (when `make triton-env` was run) the detections equal `ltdeploy predict`'s."""
    from test_triton import TRITON_PYTHON, parse_config

    repo = tmp_path / "repo"
    r = CliRunner().invoke(cli, ["export-triton", "--engine", det_onnx, "--repo", str(repo), "--name", "det"])
    assert r.exit_code == 0, r.output
    engine = parse_config(repo / "det_engine" / "config.pbtxt")
    assert engine.max_batch_size == 0 and not engine.HasField("dynamic_batching")
    assert [list(t.dims) for t in engine.input] == [[1, 3, -1, -1]]  # the graph resizes any image itself
    assert {t.name: list(t.dims) for t in engine.output} == {"boxes": [-1, 4], "labels": [-1], "scores": [-1]}
    if not os.path.isfile(TRITON_PYTHON):
        pytest.skip("no Triton serving environment: run `make triton-env`")
    from ltdeploy.triton.client import connect, infer_images
    from ltdeploy.triton.local_server import LocalTriton

    served_repo = tmp_path / "served"
    assert CliRunner().invoke(cli, ["export-triton", "--engine", det_onnx, "--repo", str(served_repo), "--name",
                                    "det", "--layout", "python", "--score-threshold", "0.05"]).exit_code == 0
    img = os.path.join(det_run["data"], "images", "val", "000002.png")
    r = CliRunner().invoke(cli, ["predict", img, "--engine", det_onnx, "--json", "--no-save", "--score-threshold",
                                 "0.05"])
    local = json.loads(r.output)["results"][0]["detections"]
    with LocalTriton(str(served_repo), TRITON_PYTHON) as server:
        served = infer_images(connect(server.url), "det", [open(img, "rb").read()])[0]["detections"]
    assert len(served) == len(local) > 0
    for s, lo in zip(served, local):
        assert s["category_id"] == lo["category_id"] and abs(s["score"] - lo["score"]) < 1e-5
        assert np.allclose(s["bbox"], lo["bbox"], atol=1e-3)
