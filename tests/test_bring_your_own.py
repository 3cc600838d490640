"""Bring your own data and model: ImageFolder trees, timm / torchvision backbones, a model trained outside
ltdeploy imported as stage 1 (classification, segmentation, detection), and the one-line refusals."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from ltdeploy.datasets.classification_sets import read_split
from tests.conftest import PY, ltdeploy_cli, run, train_plainly
from training.train import main as train

CLASSES = 8


@pytest.fixture(scope="module")
def folders(shapes_folders) -> str:
    """shapes-lt (8 classes, imbalance 20) as an ImageFolder tree."""
    return shapes_folders


def _external_eval(model: torch.nn.Module, data: str, size: int = 32) -> float:
    """Balanced top-1 on test with torchvision's own ImageFolder and transforms (the test's evaluation)."""
    from torchvision import datasets
    from torchvision import transforms as T

    tf = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
    ds = datasets.ImageFolder(os.path.join(data, "test"), tf)
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x).argmax(1) for x, _ in torch.utils.data.DataLoader(ds, batch_size=64)])
    y = torch.tensor(ds.targets)
    return float(np.mean([(pred[y == c] == c).float().mean() for c in range(len(ds.classes))]))


@pytest.fixture(scope="module")
def external(folders, tmp_path_factory) -> dict:
    """A timm model trained a few steps outside ltdeploy, with plain PyTorch, saved as a bare state dict."""
    import timm
    from torchvision import datasets

    classes = datasets.ImageFolder(os.path.join(folders, "train")).classes
    model = train_plainly(timm.create_model("resnet10t", num_classes=len(classes)), folders)
    path = str(tmp_path_factory.mktemp("ext") / "resnet10t.pth")
    torch.save(model.state_dict(), path)
    return {"weights": path, "top1": _external_eval(model, folders), "classes": classes}


def test_image_folder_reads_like_torchvision(folders):
    from torchvision.datasets import ImageFolder

    ours, theirs = read_split(folders, "train"), ImageFolder(os.path.join(folders, "train"))
    assert ours.class_names == theirs.classes and len(ours.class_names) == CLASSES
    assert [os.path.normpath(p) for p in ours.paths] == [os.path.normpath(p) for p, _ in theirs.samples]
    assert ours.labels.tolist() == theirs.targets
    assert sorted(ours.class_counts(), reverse=True)[0] == 40


def _val_top1(report: dict) -> float:
    return report["engines"][0]["columns"]["top1"]


def test_import_equals_the_users_evaluation_and_auto_lifts_the_tail(folders, external, tmp_path):
    imported, auto, onnx = tmp_path / "imported.pt", tmp_path / "auto.pt", tmp_path / "auto.onnx"
    assert train(["import", "--arch", "timm:resnet10t", "--weights", external["weights"], "--data", folders,
                  "--out", str(imported), "--input-size", "32", "--resize-short", "0", "--mean", ".5", ".5", ".5",
                  "--std", ".5", ".5", ".5"]) == 0
    from training.classification.evaluate import evaluate
    _, acc = evaluate(str(imported), folders, "test")
    assert acc["top1"] == pytest.approx(external["top1"], abs=1e-6)  # same images, labels, preprocessing
    assert train(["stage2", "--method", "auto", "--checkpoint", str(imported), "--data", folders,
                  "--out", str(auto), "--min-steps", "150"]) == 0
    _, after = evaluate(str(auto), folders, "test")
    assert after["few"] > acc["few"]
    r = run(PY, "export/to_onnx.py", str(auto), "-o", str(onnx), "--data", folders)
    assert r.returncode == 0, r.stderr
    r = ltdeploy_cli("val", "--engine", str(onnx), "--data", folders, "--json", str(tmp_path / "v.json"))
    assert r.returncode == 0, r.stderr
    scored = json.loads((tmp_path / "v.json").read_text())
    assert _val_top1(scored) == pytest.approx(after["top1"], abs=1e-6)  # torch-free val = PyTorch evaluation
    info = ltdeploy_cli("info", "--engine", str(onnx))
    assert info.returncode == 0 and os.path.basename(external["weights"]) in info.stdout
    ckpt = torch.load(imported, weights_only=True)
    assert ckpt["arch"]["backbone"] == "timm:resnet10t" and "timm" in ckpt["arch"]["libraries"]
    assert external["weights"] not in json.dumps(ckpt["arch"])  # the weights path never rebuilds the model


def test_import_matches_classes_by_name(folders, external, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("\n".join(reversed(external["classes"])) + "\n")
    reordered = torch.load(external["weights"], weights_only=True)
    for key in ("fc.weight", "fc.bias"):
        reordered[key] = reordered[key].flip(0)
    flipped = tmp_path / "flipped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reordered.items()}}, flipped)
    out = tmp_path / "byname.pt"
    assert train(["import", "--arch", "timm:resnet10t", "--weights", str(flipped), "--classes", str(names),
                  "--data", folders, "--out", str(out), "--input-size", "32", "--resize-short", "0",
                  "--mean", ".5", ".5", ".5", "--std", ".5", ".5", ".5"]) == 0
    from training.classification.evaluate import evaluate
    assert evaluate(str(out), folders, "test")[1]["top1"] == pytest.approx(external["top1"], abs=1e-6)


def test_stage1_on_image_folders_with_library_backbones(folders, tmp_path):
    for spec in ("timm:resnet10t", "tv:resnet18"):
        out = tmp_path / f"{spec.replace(':', '_')}.pt"
        assert train(["stage1", "--backbone", spec, "--data", folders, "--out", str(out), "--epochs", "1",
                      "--input-size", "32", "--resize-short", "0"]) == 0
        ck = torch.load(out, weights_only=True)
        assert ck["arch"]["backbone"] == spec
        assert ck["description"]["class_names"] == read_split(folders, "train").class_names


def test_library_preprocessing_defaults_come_from_the_model():
    from training.classification.backbones import preprocess_defaults

    assert preprocess_defaults("tv:resnet18") == (224, 256, "bilinear", (0.485, 0.456, 0.406),
                                                  (0.229, 0.224, 0.225))
    size, short, interp, mean, _ = preprocess_defaults("timm:vit_tiny_patch16_224")
    assert (size, interp, mean) == (224, "bicubic", (0.5, 0.5, 0.5)) and short == 248


def _one_error_line(r, message: str) -> None:
    lines = [line for line in r.stderr.splitlines() if line.startswith("error")]  # progress bars aside
    assert r.returncode != 0 and len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr, r.stderr


def _train_cli(*args: str, env: dict | None = None):
    return run(PY, "training/train.py", *args, env=env)


def _train_here(capsys, *args: str):
    """train.py's main in this process (the refusals come before any training: no interpreter to start)."""
    import subprocess

    capsys.readouterr()
    rc = train(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, captured.out, captured.err)


def test_bad_folders_and_weights_are_one_line_and_write_nothing(folders, external, tmp_path, capsys, monkeypatch):
    import shutil

    def broken(name: str, change) -> str:
        root = tmp_path / name
        shutil.copytree(folders, root)
        change(root)
        return str(root)

    first = sorted(os.listdir(os.path.join(folders, "train")))[0]
    cases = [
        (broken("empty", lambda r: [os.remove(p) for p in (r / "val" / first).iterdir()]), "with no images"),
        (broken("extra", lambda r: shutil.copytree(r / "val" / first, r / "val" / "zebra")), "train/ lacks: zebra"),
        (broken("notes", lambda r: (r / "train" / first / "notes.txt").write_text("x")), "notes.txt: not an image"),
        (broken("noval", lambda r: shutil.rmtree(r / "val")), "no val/ folder"),
    ]
    out = tmp_path / "never.pt"
    for i, (data, message) in enumerate(cases):  # the first as a real process: its exit status, no traceback
        args = ("stage1", "--data", data, "--out", str(out), "--epochs", "1")
        _one_error_line(_train_cli(*args) if i == 0 else _train_here(capsys, *args), message)
    weights_cases = [
        (["--weights", str(tmp_path / "missing.pth")], "no such weights file"),
        (["--weights", str(tmp_path / "names.txt")], "not a readable weights file"),
        (["--weights", external["weights"], "--arch", "timm:resnet18"], "tensors are missing"),
        (["--weights", external["weights"], "--arch", "resnet18"], "import takes a library model"),
    ]
    (tmp_path / "names.txt").write_text("a\nb\n")
    for extra, message in weights_cases:
        args = ["import", "--data", folders, "--out", str(out), *extra]
        if "--arch" not in extra:
            args += ["--arch", "timm:resnet10t"]
        _one_error_line(_train_here(capsys, *args), message)
    _one_error_line(_train_cli("import", "--arch", "timm:resnet10t", "--weights", external["weights"], "--classes",
                               str(tmp_path / "names.txt"), "--data", folders, "--out", str(out)),
                    "2 names but the weights have 8 classes")
    monkeypatch.setenv("LTDEPLOY_OFFLINE", "1")
    _one_error_line(_train_here(capsys, "stage1", "--backbone", "timm:resnet10t", "--pretrained", "--data", folders,
                                "--out", str(out)), "pass --weights FILE")
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".never")]


def test_class_count_mismatch_names_both_counts(models, folders, tmp_path):
    r = ltdeploy_cli("val", "--engine", str(models["folded"]), "--data", folders)
    _one_error_line(r, "the dataset has 8 classes (folders in train/) but the model has 10")
    r = ltdeploy_cli("quantize", str(models["folded"]), "-o", str(tmp_path / "q.onnx"), "--calib", folders)
    _one_error_line(r, "the dataset has 8 classes (folders in train/) but the model has 10")
    assert not (tmp_path / "q.onnx").exists()


def test_segmenter_import_gives_the_original_logits(seg_runs, tmp_path):
    from torchvision.models import segmentation

    from ltdeploy.datasets.seg_folders import read_seg_split
    from training.checkpoints import read_checkpoint

    data, _ = seg_runs
    names = read_seg_split(str(data), "train").class_names
    for arch, extra in (("lraspp_mobilenet_v3_large", {}), ("fcn_resnet50", {"aux_loss": True})):
        torch.manual_seed(0)
        net = getattr(segmentation, arch)(weights=None, weights_backbone=None, num_classes=len(names), **extra)
        for m in net.modules():  # trained-looking BatchNorm statistics, so eval differs from the initial state
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        weights, out = tmp_path / f"{arch}.pth", tmp_path / f"{arch}.pt"
        torch.save(net.state_dict(), weights)
        assert train(["import", "--arch", f"tv:{arch}", "--weights", str(weights), "--data", str(data),
                      "--out", str(out), "--input-size", "64"]) == 0
        x = torch.randn(2, 3, 64, 96)
        with torch.no_grad():
            diff = (net.eval()(x)["out"] - read_checkpoint(str(out)).model(x)).abs().max().item()
        assert diff < 1e-5, (arch, diff)


def test_detector_import_gives_the_original_detections(tmp_path):
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    from training.detection.imported import imported_detector

    names = [f"c{i}" for i in range(4)]
    torch.manual_seed(0)
    net = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=5, min_size=96, max_size=96,
                                  box_score_thresh=1e-4, box_detections_per_img=300).eval()
    torch.nn.init.normal_(net.roi_heads.box_predictor.cls_score.weight, std=0.01)
    torch.nn.init.normal_(net.roi_heads.box_predictor.bbox_pred.weight, std=0.001)
    torch.save(net.state_dict(), tmp_path / "frcnn.pth")
    ours = imported_detector("tv:fasterrcnn_resnet50_fpn", str(tmp_path / "frcnn.pth"), names, None)
    x = torch.rand(3, 96, 96)
    with torch.no_grad():
        a, b = net([x])[0], ours([x])[0]
    k = 20
    assert len(b["scores"]) >= k
    assert torch.equal(a["labels"][:k], b["labels"][:k])
    assert (a["boxes"][:k] - b["boxes"][:k]).abs().max() < 1e-4 and (a["scores"][:k] - b["scores"][:k]).abs().max() < 1e-6


def test_timm_specs_reach_segmentation_and_detection_bodies():
    from training.detection.model import LTDetector
    from training.segmentation.bodies import build_seg_body

    body, channels = build_seg_body("timm:resnet10t")
    with torch.no_grad():
        feat = body.eval()(torch.zeros(1, 3, 64, 64))
    assert feat.shape == (1, channels, 8, 8)  # LR-ASPP at the stride-8 feature, from feature_info
    det = LTDetector(body="timm:resnet10t", num_classes=3).eval()
    with torch.no_grad():
        levels = det.net.backbone(torch.zeros(1, 3, 64, 64))
    assert [v.shape[-1] for v in levels.values()] == [8, 4, 2, 1]  # strides 8, 16, 32 and the pooled level
    assert det.arch["body"] == "timm:resnet10t" and "pretrained" not in det.arch


def test_list_dataset_class_count_mismatch_names_both_counts(models, digits, tmp_path):
    data = tmp_path / "thirty-six"
    data.mkdir()
    (data / "classes.txt").write_text("".join(f"c{i}\n" for i in range(36)))
    lines = (digits / "test.txt").read_text().split("\n")[:3]
    (data / "test.txt").write_text("".join(f"{digits / line.split()[0]} {i}\n" for i, line in enumerate(lines)))
    r = ltdeploy_cli("val", "--engine", str(models["folded"]), "--data", str(data))
    _one_error_line(r, "the dataset has 36 classes (classes.txt) but the model has 10")
