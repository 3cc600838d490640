"""Shared fixtures: a tiny long-tailed dataset, a tiny two-stage model and its exports (built once)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


SEG_CLASSES = 10
FAKES = ROOT / "tests" / "fakes"
FAKE_PATHS = [str(FAKES), str(FAKES / "cpu_cuda")]  # fake tensorrt, and cuda-bindings on host memory


def run(*args: str, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command with this interpreter's environment (plus `env`); capture text output."""
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})


def train_here(capsys, *args: str) -> subprocess.CompletedProcess:
    """`training/train.py ARGS` in this process (no interpreter to start): its exit code, stdout and stderr as a
    process gives them; an exception it lets through fails the test."""
    from training.train import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["train.py", *args], code, out, err)


def ltdeploy_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`ltdeploy ...` as a user runs it (python -m, so no PATH assumptions)."""
    return run(PY, "-m", "ltdeploy", *args, env=env)


def fake_trt_env(version: str = "10.13.2.6") -> dict:
    """Environment for a subprocess that should import the fake tensorrt and host-memory CUDA."""
    return {"PYTHONPATH": os.pathsep.join([*FAKE_PATHS, str(ROOT)]), "FAKE_TENSORRT_VERSION": version}


@pytest.fixture()
def fake_trt(monkeypatch):
    """The fake tensorrt (10.x unless FAKE_TENSORRT_VERSION is set) and host-memory cuda-bindings, imported
    fresh for this test; yields the fake tensorrt module."""
    for name in [m for m in sys.modules if m.split(".")[0] in ("tensorrt", "cuda")]:
        monkeypatch.delitem(sys.modules, name)
    for path in reversed(FAKE_PATHS):
        monkeypatch.syspath_prepend(path)
    import tensorrt
    yield tensorrt
    for name in [m for m in sys.modules if m.split(".")[0] in ("tensorrt", "cuda")]:
        del sys.modules[name]


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> Path:
    """digits-lt at imbalance 50, written by the generator script."""
    from training.make_data import main
    out = tmp_path_factory.mktemp("data") / "digits-lt"
    assert main(["digits-lt", "--out", str(out), "--imbalance", "50"]) == 0
    return out


@pytest.fixture(scope="session")
def shapes_folders(tmp_path_factory) -> str:
    """shapes-lt (8 classes, imbalance 20) as an ImageFolder tree (train / val / test class folders)."""
    from training.make_data import main
    out = str(tmp_path_factory.mktemp("byo") / "shapes-folders")
    assert main(["shapes-lt", "--out", out, "--classes", "8", "--n-max", "40", "--imbalance", "20",
                 "--val-images", "10", "--layout", "imagefolder"]) == 0
    return out


def train_plainly(model, folders: str, epochs: int = 3, size: int = 32, lr: float = 0.05):
    """Train `model` on the folders' train split as a user does outside ltdeploy: torchvision's ImageFolder and
    transforms, SGD, plain cross-entropy. Returns the model in eval mode."""
    import torch
    from torchvision import datasets
    from torchvision import transforms as T

    torch.manual_seed(0)
    tf = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
    ds = datasets.ImageFolder(os.path.join(folders, "train"), tf)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for _ in range(epochs):
        for x, y in torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def models(digits, tmp_path_factory) -> dict[str, Path]:
    """A 3-epoch stage-1 model, its DisAlign calibration, and folded / naive / stage-1 ONNX exports."""
    from export.to_onnx import main as export
    from training.train import main as train

    d = tmp_path_factory.mktemp("runs")
    paths = {k: d / v for k, v in {"stage1": "stage1.pt", "disalign": "disalign.pt", "stage1_onnx": "stage1.onnx",
                                   "folded": "folded.onnx", "naive": "naive.onnx"}.items()}
    assert train(["stage1", "--data", str(digits), "--out", str(paths["stage1"]), "--epochs", "3"]) == 0
    assert train(["stage2", "--method", "disalign", "--checkpoint", str(paths["stage1"]), "--data", str(digits),
                  "--out", str(paths["disalign"]), "--min-steps", "200"]) == 0
    assert export([str(paths["stage1"]), "-o", str(paths["stage1_onnx"])]) == 0
    assert export([str(paths["disalign"]), "-o", str(paths["folded"])]) == 0
    assert export([str(paths["disalign"]), "-o", str(paths["naive"]), "--no-fold"]) == 0
    return paths


@pytest.fixture(scope="session")
def images(digits, tmp_path_factory):
    """Two real test digits plus the awkward kinds of file users feed a classifier."""
    d = tmp_path_factory.mktemp("images")
    lines = (digits / "test.txt").read_text().split("\n")[:2]
    good = [str(digits / line.split(" ")[0]) for line in lines]
    labels = [line.split(" ")[1] for line in lines]
    digit = cv2.imread(good[0], cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(d / "gray.png"), digit)
    cv2.imwrite(str(d / "rgba.png"), cv2.cvtColor(digit, cv2.COLOR_GRAY2BGRA))
    cv2.imwrite(str(d / "deep.png"), digit.astype(np.uint16) * 257)
    ok, jpg = cv2.imencode(".jpg", cv2.resize(digit, (64, 64)))
    (d / "cut.jpg").write_bytes(jpg.tobytes()[: len(jpg) // 2])
    (d / "text.png").write_text("not an image")
    return {"good": good, "labels": labels, "dir": d}


@pytest.fixture(scope="session")
def seg_runs(tmp_path_factory):
    """A 2-epoch seg-lt segmenter, its per-pixel DisAlign, and its logits and label-map ONNX exports."""
    from export.to_onnx import main as export
    from training.segmentation.synthetic import make_seg_lt
    from training.train import main as train

    root = tmp_path_factory.mktemp("seg")
    data, runs = root / "seg-lt", root / "runs"
    make_seg_lt(str(data), num_classes=SEG_CLASSES, n_train=32, n_val=8, imbalance=20)
    paths = {k: runs / v for k, v in {"stage1": "stage1.pt", "disalign": "disalign.pt", "onnx": "disalign.onnx",
                                     "labels": "labels.onnx"}.items()}
    assert train(["stage1", "--data", str(data), "--out", str(paths["stage1"]), "--epochs", "2",
                  "--batch-size", "8", "--hflip"]) == 0
    assert train(["stage2", "--checkpoint", str(paths["stage1"]), "--data", str(data), "--out",
                  str(paths["disalign"]), "--min-steps", "30", "--batch-size", "8"]) == 0
    assert export([str(paths["disalign"]), "-o", str(paths["onnx"])]) == 0
    assert export([str(paths["disalign"]), "-o", str(paths["labels"]), "--argmax"]) == 0
    return data, paths
