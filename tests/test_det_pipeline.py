"""Detection end to end on tiny det-lt replicas laid out exactly as LVIS v1 and COCO 2017 are downloaded
(mixed aspect ratios): stage 1 with PCB and RFS, stage 2 DisAlign, export with NMS in the graph (parity on
non-square inputs), ONNX = PyTorch AP, and ltdeploy predict (photo-sized inputs, drawn image, COCO JSON with
the dataset's own category ids, bad input)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil

import cv2
import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from helpers import mask_to_rle

from export.det_export import match_detections
from export.to_onnx import main as export_main
from ltdeploy.backends.onnxruntime import OnnxRuntimeBackend
from ltdeploy.cli import cli
from ltdeploy.datasets.det_sources import resolve_det_source
from ltdeploy.detect import select, to_image
from ltdeploy.image_io import read_image
from ltdeploy.preprocess import preprocess_image
from training.checkpoints import read_checkpoint
from training.core.checkpoint import save_checkpoint
from training.detection.data import LVISDataset
from training.detection.engine import detect
from training.detection.evaluate import evaluate_detection, onnx_detections
from training.make_data import main as make_data
from training.train import main as train_main

pytestmark = pytest.mark.slow  # every test here shares detectors trained by the module fixtures


def val_images(data: str) -> list[str]:
    """The val split's image files (LVIS val draws from train2017/ and val2017/)."""
    return resolve_det_source(data).image_paths("val")


def make_det_replica(base, layout: str, classes: int, train: int, val: int) -> str:
    """A tiny det-lt set at 64 px in a downloaded dataset's layout; returns its folder."""
    data = str(base / layout)
    assert make_data(["det-lt", "--out", data, "--classes", str(classes), "--train-images", str(train),
                      "--val-images", str(val), "--size", "64", "--layout", layout]) == 0
    return data


@pytest.fixture(scope="module")
def det_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("detrun")
    data = make_det_replica(base, "lvis", classes=8, train=16, val=6)
    s1, s2 = str(base / "pcb.pt"), str(base / "pcb_disalign.pt")
    common = ["--data", data, "--batch-size", "4", "--warmup", "2"]
    assert train_main(["stage1", *common, "--out", s1, "--epochs", "2", "--pcb", "--pcb-start", "0", "--no-val",
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
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        assert export_main([sharp, "-o", out, "--verify-images", "6"]) == 0
    printed = log.getvalue()
    assert "unmatched 0" in printed and "NonMaxSuppression 2" in printed  # RPN and per-class NMS
    assert all(size in printed for size in ("64x48", "48x64", "64x32"))  # parity on non-square inputs
    det_run["sharp"] = sharp
    return out


def test_onnx_ap_equals_pytorch_ap(det_run: dict, det_onnx: str) -> None:
    pt = evaluate_detection(det_run["sharp"], det_run["data"])
    ox = evaluate_detection(det_onnx, det_run["data"])
    assert pt["detections"] > 0
    for k in ("AP", "AP50", "APr", "APc"):
        assert abs(pt["box"][k] - ox["box"][k]) <= 0.1
    assert ox["description"].calibration["folded"] == "affine"


def test_checkpoint_and_onnx_detect_the_same_on_every_image(det_run: dict, det_onnx: str) -> None:
    """Image by image, in the photos' pixels: evaluation's PyTorch path is the runtime's (one image at a time,
    the same fitted resize and the same way back), not a padded batch of mixed shapes."""
    ck = read_checkpoint(det_run["sharp"])
    val = LVISDataset(resolve_det_source(det_run["data"]), "val", ck.description.preprocess)
    assert len({tuple(val[i][0].shape) for i in range(len(val))}) >= 3
    by_image: dict = {}
    for source, dets in (("pt", detect(ck.model, val)), ("onnx", onnx_detections(det_onnx, val))):
        for d in dets:
            if d["score"] >= 0.05:
                by_image.setdefault(d["image_id"], {"pt": [], "onnx": []})[source].append(d)
    assert by_image
    def arrays(dets: list[dict]) -> dict:
        return {"boxes": np.array([d["bbox"] for d in dets]).reshape(-1, 4), "scores": np.array([d["score"] for d in dets]),
                "labels": np.array([d["category_id"] for d in dets])}
    for image_id, pair in by_image.items():
        unmatched, box, score, _ = match_detections(arrays(pair["pt"]), arrays(pair["onnx"]))
        assert unmatched == 0 and box <= 1e-2 and score <= 1e-4, (image_id, unmatched, box, score)


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
    img = val_images(det_run["data"])[0]
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
    shutil.copy(val_images(det_run["data"])[1], good)
    out = tmp_path / "pred"
    r = CliRunner().invoke(cli, ["predict", str(bad), good, "--engine", det_onnx, "--out", str(out)])
    assert r.exit_code == 1
    assert sorted(os.listdir(out)) == ["000001_det.png"]


@pytest.fixture(scope="module")
def coco_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Mask R-CNN on a COCO 2017 replica (sparse category ids, a crowd region): stage 1, stage 2, export."""
    base = tmp_path_factory.mktemp("cocorun")
    data = make_det_replica(base, "coco", classes=6, train=8, val=4)
    s1, s2, out = str(base / "mask.pt"), str(base / "mask_disalign.pt"), str(base / "mask.onnx")
    common = ["--data", data, "--batch-size", "4", "--warmup", "2", "--no-val"]
    assert train_main(["stage1", *common, "--out", s1, "--epochs", "1", "--masks", "--input-size", "64",
                       "--detections-per-image", "20"]) == 0
    ck = read_checkpoint(s1)
    torch.manual_seed(1)
    with torch.no_grad():  # decisive scores: no NMS near-ties
        ck.model.branch.predictor.cls_score.weight.normal_(0, 0.3)
    save_checkpoint(s1, ck.model, ck.description, {})
    assert train_main(["stage2", *common, "--checkpoint", s1, "--out", s2, "--epochs", "1"]) == 0
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        assert export_main([s2, "-o", out, "--verify-images", "4"]) == 0
    assert "unmatched 0" in log.getvalue(), log.getvalue()
    return {"base": base, "data": data, "pt": s2, "onnx": out}


def test_coco_ids_masks_and_ap_survive_export(coco_run: dict) -> None:
    """COCO's sparse ids reach the description and the results; ONNX box and mask AP = PyTorch's."""
    pt = evaluate_detection(coco_run["pt"], coco_run["data"])
    ox = evaluate_detection(coco_run["onnx"], coco_run["data"])
    assert ox["description"].class_ids == pt["description"].class_ids == [1, 18, 37, 53, 73, 90]
    assert pt["detections"] > 0
    info = CliRunner().invoke(cli, ["info", "--engine", coco_run["onnx"]])
    assert info.exit_code == 0 and "1 x 3 x h x w (h, w <= 64)" in info.output
    assert "short side to 64, long side at most 64, aspect kept" in info.output
    for kind in ("box", "mask"):
        for k in ("AP", "AP50", "APr"):
            assert abs(pt[kind][k] - ox[kind][k]) <= 0.1, (kind, k, pt[kind][k], ox[kind][k])


def test_predict_on_photo_sized_inputs_maps_back_to_their_pixels(coco_run: dict, tmp_path) -> None:
    """A 640x480 and a 480x640 photo (a landscape and a portrait val image blown up 10x, nearest neighbour, which
    the fitted resize brings back to the very same model input): boxes are the small image's times 10, masks and
    the drawn picture have the photo's size, category ids are the dataset's."""
    source = resolve_det_source(coco_run["data"])
    paths = source.image_paths("val")
    shapes = [read_image(p).shape[:2] for p in paths]
    small = [paths[shapes.index((48, 64))], paths[shapes.index((64, 48))]]
    big = []
    for p in small:
        rgb = read_image(p)
        big.append(str(tmp_path / f"big_{os.path.basename(p)}.png"))
        cv2.imwrite(big[-1], cv2.resize(rgb, (rgb.shape[1] * 10, rgb.shape[0] * 10),
                                        interpolation=cv2.INTER_NEAREST)[:, :, ::-1])
    out = str(tmp_path / "pred")
    r = CliRunner().invoke(cli, ["predict", *small, *big, "--engine", coco_run["onnx"], "--out", out,
                                 "--score-threshold", "0.05", "--json"])
    assert r.exit_code == 0, r.output
    results = json.loads(r.output)["results"]
    coco_ids = {c["id"] for c in source.load("train")["categories"]}
    backend = OnnxRuntimeBackend(coco_run["onnx"])
    pp = backend.description.preprocess
    for lo, hi, photo, (h, w) in zip(results[:2], results[2:], big, [(480, 640), (640, 480)]):
        assert (hi["height"], hi["width"]) == (h, w)
        assert cv2.imread(hi["files"]["image"]).shape == (h, w, 3)
        assert len(lo["detections"]) == len(hi["detections"]) > 0
        for a, b in zip(lo["detections"], hi["detections"]):
            assert a["category_id"] == b["category_id"] and a["category_id"] in coco_ids
            assert np.allclose(np.array(a["bbox"]) * 10, b["bbox"], atol=0.05)
            assert b["segmentation"]["size"] == [h, w] and sum(b["segmentation"]["counts"]) == h * w
        # the photo's masks are the graph's box masks pasted at the photo's own pixels, not the small image's
        # masks blown up
        dets = select(backend.run({"images": preprocess_image(read_image(photo), pp)[None]}), 0.05, 100)
        expected = [mask_to_rle(m.full()) for m in to_image(dets, pp.geometry(h, w))["masks"]]
        assert expected == [d["segmentation"] for d in hi["detections"]]
        areas = [sum(d["segmentation"]["counts"][1::2]) for d in hi["detections"]]
        small_areas = [sum(d["segmentation"]["counts"][1::2]) for d in lo["detections"]]
        assert 50 <= sum(areas) / max(sum(small_areas), 1) <= 200


def test_fp16_detector_keeps_its_detections_and_ap(det_run: dict, det_onnx: str, tmp_path) -> None:
    """fp16 goes into the backbone only: NMS, box decoding and the calibrated RoI head stay fp32."""
    from ltdeploy.backends import load_backend
    from ltdeploy.gpu.fp16 import convert_to_fp16
    from ltdeploy.preprocess import preprocess_image

    half = str(tmp_path / "det.fp16.onnx")
    counts = convert_to_fp16(det_onnx, half)
    assert counts["fp16_nodes"] > 50
    full, low = load_backend(det_onnx), load_backend(half)
    desc, paired, total = full.description, 0, 0
    for path in val_images(det_run["data"]):
        x = preprocess_image(read_image(path), desc.preprocess)[None]
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
    from helpers import TRITON_PYTHON, parse_config

    repo = tmp_path / "repo"
    r = CliRunner().invoke(cli, ["export-triton", "--engine", det_onnx, "--repo", str(repo), "--name", "det"])
    assert r.exit_code == 0, r.output
    engine = parse_config(repo / "det_engine" / "config.pbtxt")
    assert engine.max_batch_size == 0 and not engine.HasField("dynamic_batching")
    assert [list(t.dims) for t in engine.input] == [[1, 3, -1, -1]]  # the graph resizes any image itself
    assert {t.name: list(t.dims) for t in engine.output} == {"boxes": [-1, 4], "labels": [-1], "scores": [-1]}
    if not os.path.isfile(TRITON_PYTHON):
        pytest.skip("no Triton serving environment: run `make triton-env`")
    from benchmarks.local_triton import LocalTriton
    from ltdeploy.triton.client import connect, infer_images

    served_repo = tmp_path / "served"
    assert CliRunner().invoke(cli, ["export-triton", "--engine", det_onnx, "--repo", str(served_repo), "--name",
                                    "det", "--layout", "python", "--score-threshold", "0.05"]).exit_code == 0
    img = val_images(det_run["data"])[2]
    r = CliRunner().invoke(cli, ["predict", img, "--engine", det_onnx, "--json", "--no-save", "--score-threshold",
                                 "0.05"])
    local = json.loads(r.output)["results"][0]["detections"]
    with LocalTriton(str(served_repo), TRITON_PYTHON) as server:
        served = infer_images(connect(server.url), "det", [open(img, "rb").read()])[0]["detections"]
    assert len(served) == len(local) > 0
    for s, lo in zip(served, local):
        assert s["category_id"] == lo["category_id"] and abs(s["score"] - lo["score"]) < 1e-5
        assert np.allclose(s["bbox"], lo["bbox"], atol=1e-3)


def test_exported_detectors_hold_no_loop_and_record_their_candidate_cap(det_onnx: str, coco_run: dict) -> None:
    """Faster R-CNN with PCB and Mask R-CNN without: no Loop at all (masks leave as 28 x 28 per box), and the
    description records the cap every runtime applies."""
    from export.onnx_export import op_counts
    from ltdeploy.graph_check import trt_blockers
    from ltdeploy.metadata import description_from_metadata

    for path in (det_onnx, coco_run["onnx"]):
        model = onnx.load(path)
        assert trt_blockers(model) == [] and "Loop" not in op_counts(path) and "Scan" not in op_counts(path)
        desc = description_from_metadata({p.key: p.value for p in model.metadata_props}, path)
        assert desc.postprocess["candidates"] == 3840 and desc.postprocess["candidates_per_class"] == 300
    masks = [o for o in onnx.load(coco_run["onnx"]).graph.output if o.name == "masks"][0]
    assert [d.dim_value for d in masks.type.tensor_type.shape.dim][1:] == [1, 28, 28]
    info = CliRunner().invoke(cli, ["info", "--engine", coco_run["onnx"]])
    assert "candidates before NMS 300 per class and 3840 per image" in info.output
    assert "masks 28 x 28 per box" in info.output


def test_nms_cap_benchmark_on_a_trained_detector(det_run: dict, tmp_path) -> None:
    """benchmarks/nms_cap.py: box AP per cap and the candidates that reached NMS, within each cap."""
    from benchmarks.nms_cap import main

    out = tmp_path / "caps.json"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([det_run["stage2"], "--data", det_run["data"], "--caps", "none,2:10", "--json", str(out)]) == 0
    rows = {r["cap"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["none"]["images"] == rows["2:10"]["images"] == 6
    assert rows["2:10"]["candidates_max"] <= 10 < rows["none"]["candidates_max"]
    assert 0 <= rows["2:10"]["AP"] <= 100
    # without a cap the benchmark's counting NMS is evaluate.py's NMS: the same AP (a two-epoch detector's AP
    # on six images is often 0, so its size says nothing)
    plain = evaluate_detection(det_run["stage2"], det_run["data"])
    assert plain["detections"] > 0
    assert all(rows["none"][k] == pytest.approx(plain["box"][k], abs=1e-6) for k in ("AP", "APr", "APc", "APf"))


def test_val_equals_evaluate_and_int8_keeps_nms_float(det_run: dict, det_onnx: str, tmp_path) -> None:
    """`ltdeploy val` gives evaluate.py's AP on the same ONNX; the INT8 detector (feature extractor only) still
    detects, its RoI heads, box decoding and NMS untouched."""
    out = tmp_path / "det.int8.onnx"
    r = CliRunner().invoke(cli, ["quantize", det_onnx, "-o", str(out), "--calib", det_run["data"], "--calib-images",
                                 "8"])
    assert r.exit_code == 0, r.output
    graph = onnx.load(str(out))
    quantized = [n.name for n in graph.graph.node if n.op_type == "QuantizeLinear"]
    assert quantized and all("/backbone/" in n or n.startswith("images") for n in quantized), quantized[:5]
    nms = 'op_type: "NonMaxSuppression"'  # in subgraphs too
    assert str(graph.graph).count(nms) == str(onnx.load(det_onnx).graph).count(nms) >= 2
    r = CliRunner().invoke(cli, ["val", "-e", det_onnx, "-e", str(out), "--data", det_run["data"], "--json",
                                 str(tmp_path / "val.json"), "--csv", str(tmp_path / "val.csv")])
    assert r.exit_code == 0, r.output
    first, second = json.loads((tmp_path / "val.json").read_text())["engines"]
    want = evaluate_detection(det_onnx, det_run["data"])
    for k in ("AP", "AP50", "APr", "APc", "APf"):
        assert first["columns"][k] == want["box"][k], k
    assert first["details"]["detections"] == want["detections"] and second["details"]["detections"] > 0
    assert len(first["per_class"]) == 8 and "APr" in r.output


def test_an_exif_rotated_photo_is_detected_in_the_displayed_frame(det_run: dict, det_onnx: str, tmp_path) -> None:
    from test_exif_and_modes import _photos, _same_predictions

    _same_predictions(det_onnx, _photos(tmp_path, val_images(det_run["data"])[0]))


def test_an_imported_torchvision_detector_calibrates_and_exports(det_run: dict, tmp_path) -> None:
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    torch.manual_seed(0)
    net = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=9)
    torch.nn.init.normal_(net.roi_heads.box_predictor.cls_score.weight, std=0.01)
    # untrained box deltas scatter a thousand overlapping boxes that NMS ranks by near-equal scores; a trained
    # regressor does not, and zero deltas keep the parity check about the export, not about those ties
    torch.nn.init.zeros_(net.roi_heads.box_predictor.bbox_pred.weight)
    weights, s1, s2, onnx_out = (str(tmp_path / n) for n in ("frcnn.pth", "imp.pt", "imp_da.pt", "imp.onnx"))
    torch.save({"model": net.state_dict()}, weights)
    common = ["--data", det_run["data"], "--input-size", "64"]
    assert train_main(["import", "--arch", "tv:fasterrcnn_resnet50_fpn", "--weights", weights, "--out", s1,
                       *common]) == 0
    ck = read_checkpoint(s1)
    assert ck.arch["frozen_bn"] and ck.arch["representation"] == 1024
    assert ck.description.provenance["weights"]["file"] == "frcnn.pth"
    assert train_main(["stage2", "--checkpoint", s1, "--out", s2, "--data", det_run["data"], "--epochs", "1",
                       "--batch-size", "4", "--warmup", "2"]) == 0
    assert export_main([s2, "-o", onnx_out, "--data", det_run["data"]]) == 0
    assert os.path.getsize(onnx_out) > 1e8  # ResNet-50-FPN with its 1024-wide box head
