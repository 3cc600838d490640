"""`train.py stage2 --method auto`: every method fitted on the same stage 1, the best on val kept, test never read."""
import shutil

import pytest
from click.testing import CliRunner

from ltdeploy.calibrate.auto import AUTO_ORDER, AUTO_RHO
from ltdeploy.cli import cli
from training.checkpoints import read_checkpoint
from training.core.methods import METHODS
from training.train import main as train


def test_the_candidates_are_every_method_once():
    assert set(AUTO_ORDER) | {"disalign"} == set(METHODS) and len(set(AUTO_ORDER)) == len(AUTO_ORDER)


@pytest.fixture(scope="module")
def auto_run(models, digits, tmp_path_factory):
    root = tmp_path_factory.mktemp("auto")
    data = root / "digits-lt"
    shutil.copytree(digits, data)
    (data / "test.txt").unlink()  # any read of the test split now fails the run
    stage1 = root / "stage1.pt"
    shutil.copy(models["stage1"], stage1)
    out = root / "auto.pt"
    args = ["stage2", "--method", "auto", "--checkpoint", str(stage1), "--data", str(data), "--min-steps", "40",
            "--epochs", "2"]
    assert train([*args, "--out", str(out)]) == 0
    assert train([*args, "--out", str(root / "few.pt"), "--select", "few"]) == 0
    return out, root / "few.pt"


def test_auto_keeps_the_first_best_on_val_and_records_the_comparison(auto_run, digits, tmp_path, capsys):
    ck = read_checkpoint(str(auto_run[0]))
    rows = ck.history["auto"]["candidates"]
    assert [r["candidate"] for r in rows] == [*AUTO_ORDER, *(f"disalign rho={r}" for r in AUTO_RHO)]
    best = max(r["val"] for r in rows)
    chosen = next(r for r in rows if r["val"] == best)  # ties go to the cheaper graph, listed first
    record = ck.description.calibration["auto"]
    assert record["chosen"] == chosen["candidate"] and ck.description.calibration["method"] == chosen["method"]
    assert record["select"] == "top1" and record["margin"] >= 0 and ck.history["auto"]["split"] == "val"
    assert ck.history["val"]["top1"] == pytest.approx(best)
    n = ck.history["val"]["samples"]  # val's standard error of a balanced top-1, sqrt(p (1 - p) / n)
    assert n == 200 and record["val_noise"] == pytest.approx((best * (1 - best) / n) ** 0.5, abs=1e-6)
    few = read_checkpoint(str(auto_run[1]))
    assert few.description.calibration["auto"]["select"] == "few"
    assert "val_noise" not in few.description.calibration["auto"]  # no closed form for one group's accuracy
    assert few.history["val"]["few"] == pytest.approx(max(r["val"] for r in few.history["auto"]["candidates"]))

    from export.to_onnx import main as export
    onnx = tmp_path / "auto.onnx"
    assert export([str(auto_run[0]), "-o", str(onnx), "--data", str(digits)]) == 0
    r = CliRunner().invoke(cli, ["info", "--engine", str(onnx)])
    assert r.exit_code == 0 and f"chosen:        {chosen['candidate']} by val top1" in r.output
    assert f"val's standard error {record['val_noise']:.4f}" in r.output
    from training.evaluate import main as evaluate
    capsys.readouterr()
    assert evaluate([str(auto_run[0]), "--data", str(digits)]) == 0
    assert f"calibration chosen by --method auto: {chosen['candidate']} by val top1" in capsys.readouterr().out


def test_auto_refuses_an_unknown_selection(models, digits, tmp_path, capsys):
    assert train(["stage2", "--method", "auto", "--checkpoint", str(models["stage1"]), "--data", str(digits),
                  "--out", str(tmp_path / "x.pt"), "--select", "apr"]) == 2
    assert "selects by top1, few, medium, many" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


def test_detection_tries_each_rho_at_the_run_lr_and_at_a_larger_one():
    from training.config import Stage2Config
    from training.tasks import get_task

    det = get_task("detection")
    found = det.auto_candidates(Stage2Config(lr=0.01, warmup=100))
    assert [o["rho"] for _, o in found] == [0.5, 0.8, 1.2] * 2
    assert [o.get("lr") for _, o in found] == [None] * 3 + [0.2] * 3 and found[3][1]["warmup"] == 10
    assert len(det.auto_candidates(Stage2Config(lr=0.2, warmup=10))) == 3  # that setting is the run's own


def test_segmentation_auto_keeps_the_best_rho_on_val(seg_runs, tmp_path):
    data, paths = seg_runs
    out = tmp_path / "auto.pt"
    assert train(["stage2", "--method", "auto", "--select", "tail", "--checkpoint", str(paths["stage1"]),
                  "--data", str(data), "--out", str(out), "--min-steps", "5", "--batch-size", "8"]) == 0
    ck = read_checkpoint(str(out))
    rows = ck.history["auto"]["candidates"]
    assert [r["rho"] for r in rows] == [0.3, 0.6, 1.0]
    best = max(r["val"] for r in rows)
    assert ck.description.calibration["auto"]["chosen"] == next(r for r in rows if r["val"] == best)["candidate"]
    assert ck.history["val"]["tail_mIoU"] == pytest.approx(best)
    assert all(r["scores"]["tail_mIoU"] == r["val"] and "mIoU" in r["scores"] for r in rows)
