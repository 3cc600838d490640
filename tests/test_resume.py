"""Long runs: a run killed after its first save and resumed ends with the uninterrupted run's weights; SIGTERM
saves a resumable state first; a non-finite loss stops the run in one line; bf16 autocast trains and exports."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time

import pytest
import torch

from tests.conftest import PY, ROOT, run
from training.core.resume import is_state_file

pytestmark = pytest.mark.slow  # three short trainings in subprocesses


def _base(digits) -> list[str]:
    return [PY, "training/train.py", "stage1", "--data", str(digits), "--epochs", "4", "--device", "cpu",
            "--batch-size", "32"]


def _weights(path) -> dict:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return payload["state_dict"]


def _stopped(cmd: list[str], how: int, ready) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(how)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def test_killed_or_stopped_runs_resume_to_the_uninterrupted_weights(digits, tmp_path):
    from training.train import main as train

    full, killed, stopped = tmp_path / "full.pt", tmp_path / "killed.pt", tmp_path / "stopped.pt"
    # the uninterrupted run and the resumes in this process (train.py's main, which sets the thread count the
    # subprocesses use); the runs that are killed or stopped are real processes
    assert train([*_base(digits)[2:], "--out", str(full)]) == 0
    # SIGKILL once the first epoch's state is on disk
    r = _stopped([*_base(digits), "--out", str(killed), "--save-every", "1"], signal.SIGKILL,
                 lambda: killed.exists())
    assert r.returncode == -signal.SIGKILL and is_state_file(str(killed))
    # SIGTERM mid-run (after the first save, so the handler is surely installed): the loop saves where it is,
    # epoch and iteration, and exits with one line
    r = _stopped([*_base(digits), "--out", str(stopped), "--save-every", "1"], signal.SIGTERM,
                 lambda: stopped.exists())
    errors = [line for line in r.stderr.splitlines() if line.startswith("error")]
    assert r.returncode == 2 and len(errors) == 1 and "--resume" in errors[0], r.stderr
    assert is_state_file(str(stopped))
    for path in (killed, stopped):
        assert train([*_base(digits)[2:], "--out", str(path), "--resume", str(path)]) == 0
        ours, theirs = _weights(path), _weights(full)
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), path.name


def test_a_non_finite_loss_stops_in_one_line_and_keeps_the_last_save(digits, tmp_path):
    out = tmp_path / "nan.pt"
    r = run(*_base(digits), "--out", str(out), "--lr", "1e30", "--save-every", "1")
    errors = [line for line in r.stderr.splitlines() if line.startswith("error")]
    assert r.returncode == 2 and len(errors) == 1 and "iteration" in errors[0] and "Traceback" not in r.stderr
    assert not out.exists() or is_state_file(str(out))  # nothing but the last good state


def test_bf16_autocast_trains_and_exports(digits, tmp_path):
    from export.to_onnx import main as export
    from training.train import main as train

    ck, onnx_out = tmp_path / "bf16.pt", tmp_path / "bf16.onnx"
    assert train(["stage1", "--data", str(digits), "--epochs", "1", "--amp", "bf16", "--channels-last", "--out",
                  str(ck)]) == 0
    assert all(v.dtype in (torch.float32, torch.int64) for v in _weights(ck).values())
    assert export([str(ck), "-o", str(onnx_out)]) == 0 and onnx_out.exists()


def test_an_unfinished_run_is_refused_where_a_checkpoint_is_expected(digits, tmp_path):
    state = tmp_path / "running.pt"
    torch.save({"format": "ltdeploy.resume/1"}, state)
    r = run(PY, "export/to_onnx.py", str(state), "-o", str(tmp_path / "m.onnx"))
    assert r.returncode != 0 and "--resume" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "m.onnx").exists()
    r = run(PY, "training/train.py", "stage2", "--checkpoint", str(state), "--data", str(digits),
            "--out", str(tmp_path / "s2.pt"))
    assert r.returncode == 2 and "--resume" in r.stderr and "Traceback" not in r.stderr, r.stderr


def _with_a_corrupt_train_image(digits, tmp_path):
    import shutil

    data = tmp_path / "digits"
    shutil.copytree(digits, data)
    first = (data / "train.txt").read_text().split()[0]
    (data / first).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return data, first


def test_an_unreadable_image_is_skipped_counted_and_named_once(digits, tmp_path):
    data, bad = _with_a_corrupt_train_image(digits, tmp_path)
    out = tmp_path / "s1.pt"
    r = run(PY, "training/train.py", "stage1", "--data", str(data), "--epochs", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning: skipping")]
    assert len(warnings) == 1 and bad in warnings[0]
    payload = torch.load(out, map_location="cpu", weights_only=True)
    assert payload["history"]["stage1"]["bad_images"] == 1


def test_a_streamed_batch_leaves_out_the_unreadable_image(digits, tmp_path, monkeypatch):
    from ltdeploy.datasets.classification_sets import read_split
    from ltdeploy.preprocess import PreprocessConfig
    from training.classification import data as data_module
    from training.core import preload

    data, _ = _with_a_corrupt_train_image(digits, tmp_path)
    monkeypatch.setattr(preload, "PRELOAD_LIMIT_BYTES", 0)  # stream, as a large set does
    split = read_split(str(data), "train")
    pre = PreprocessConfig(input_size=(32, 32), resize_short=0, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)
    loader = data_module.make_loader(split, pre, 64,
                                     shuffle=False, workers=0, skip_bad=True)
    batches = list(loader)
    assert sum(len(b[2]) for b in batches) == 1 and sum(len(b[1]) for b in batches) == len(split.paths) - 1


def test_the_gpu_training_check_runs_its_steps_on_the_cpu(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_training", os.path.join(ROOT, "scripts", "gpu_training.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    capsys.readouterr()
    code = script.main(["--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0, out[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["ok"] and len(summary["checks"]) == 5


def test_segmentation_and_detection_skip_an_unreadable_training_image(tmp_path, capsys):
    from ltdeploy.datasets.det_sources import resolve_det_source
    from ltdeploy.datasets.seg_folders import read_seg_split
    from tests.test_det_pipeline import make_det_replica
    from training.segmentation.synthetic import make_seg_lt
    from training.train import main as train

    seg = tmp_path / "seg-lt"
    make_seg_lt(str(seg), num_classes=6, n_train=8, n_val=4, imbalance=4)
    det = make_det_replica(tmp_path, "lvis", classes=6, train=10, val=2)
    victims = {"seg": read_seg_split(str(seg), "train").images[0], "det": resolve_det_source(det).image_paths("train")[0]}
    runs = {"seg": [str(seg), "--batch-size", "4"], "det": [det, "--batch-size", "2", "--input-size", "64", "--no-val",
                                                            "--warmup", "2"]}
    for name, args in runs.items():
        with open(victims[name], "r+b") as f:
            f.truncate(40)  # a download cut short
        out = tmp_path / f"{name}.pt"
        capsys.readouterr()
        code = train(["stage1", "--data", *args, "--epochs", "1", "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 0, err[-2000:]
        assert err.count("warning: skipping") == 1, name  # (after a progress bar, on its line)
        payload = torch.load(out, map_location="cpu", weights_only=True)
        assert payload["history"]["stage1"]["bad_images"] == 1, name


def _tiny_detector():
    from training.detection.model import LTDetector

    torch.manual_seed(0)
    return LTDetector(body="lite0_fpn", num_classes=6, passes=2, pcb=True)


@pytest.fixture(scope="module")
def uninterrupted_detector(tmp_path_factory):
    """A 10-image det-lt set and the detector trained on it without a stop (2 epochs of 3 steps, PCB from
    epoch 1); its config and final weights."""
    from ltdeploy.datasets.det_sources import resolve_det_source
    from ltdeploy.preprocess import PreprocessConfig
    from tests.test_det_pipeline import make_det_replica
    from training.config import Stage1Config
    from training.detection.data import LVISDataset
    from training.detection.engine import train_detector

    folder = tmp_path_factory.mktemp("det-resume")
    det = make_det_replica(folder, "lvis", classes=6, train=10, val=2)
    data = LVISDataset(resolve_det_source(det), "train", PreprocessConfig.fit(56, 64, interpolation="bilinear"))
    cfg = Stage1Config(out=str(folder / "full.pt"), epochs=2, batch_size=4, lr=0.02, warmup=2, pcb_start=0,
                       hflip=True, workers=0, device="cpu")
    full = _tiny_detector()
    history = train_detector(full, data, cfg)
    assert [e["pcb"] for e in history["epochs"]] == [False, True]  # M became ready only after epoch 1 began
    return data, cfg, full.state_dict()


@pytest.mark.parametrize("stop_after", [2, 3], ids=["mid-epoch-while-pcb-switches", "at-the-epoch-boundary"])
def test_a_stopped_detector_resumes_to_the_uninterrupted_weights(uninterrupted_detector, tmp_path, monkeypatch,
                                                                 stop_after):
    """SIGTERM after `stop_after` steps: mid-epoch 1, after M became ready but with PCB off for that epoch
    (decided at its start); or before epoch 2's first step (the resumed process pools its first batch then)."""
    from training.core.resume import Interrupted
    from training.detection.engine import train_detector

    data, cfg, theirs = uninterrupted_detector
    state = str(tmp_path / "stopped.pt")
    stopped = _tiny_detector()
    heads, steps = stopped.net.roi_heads, []
    loss = heads.classification_loss

    def counted(labels):
        steps.append(1)
        if len(steps) == stop_after:  # the loop sees the request before the next step
            os.kill(os.getpid(), signal.SIGTERM)
        return loss(labels)
    monkeypatch.setattr(heads, "classification_loss", counted)
    with pytest.raises(Interrupted, match="--resume"):
        train_detector(stopped, data, dataclasses.replace(cfg, out=state))
    assert is_state_file(state) and heads.confusion.ready and heads.pcb_active == (stop_after == 3)
    resumed = _tiny_detector()
    train_detector(resumed, data, dataclasses.replace(cfg, out=state, resume=state))
    ours = resumed.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
