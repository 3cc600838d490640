import contextlib
import io
import json

import pytest
import torch

from benchmarks.run_latency import main as latency


def test_latency_benchmark_writes_table_and_json(models, tmp_path, capsys):
    out = tmp_path / "lat.json"
    assert latency(["--engine", str(models["stage1_onnx"]), "--engine", str(models["folded"]), "--torch",
                    str(models["disalign"]), "--batch", "1,4", "--rounds", "1", "--runs", "3", "--warmup", "1",
                    "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    rows = doc["results"]
    assert len(rows) == 6 and {row["batch"] for row in rows} == {1, 4}
    first = [row for row in rows if row["engine"] == str(models["stage1_onnx"])]
    assert all(row["ratio_to_first"] == 1.0 for row in first)
    assert all(0 < row["p50"] <= row["p90"] <= row["p99"] for row in rows)
    assert doc["environment"]["threads"] >= 1 and "p50 ms" in capsys.readouterr().out


def test_latency_end_to_end_rows_include_decoding(models, images, tmp_path, capsys):
    out = tmp_path / "e2e.json"
    assert latency(["--engine", str(models["folded"]), "--batch", "1,2", "--rounds", "1", "--runs", "3",
                    "--warmup", "1", "--images", *images["good"], "--end-to-end", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert sorted((row["time"], row["batch"]) for row in rows) == [("end-to-end", 1), ("end-to-end", 2),
                                                                    ("engine", 1), ("engine", 2)]
    assert all(row["precision"] == "fp32" and row["provider"] == "CPUExecutionProvider" for row in rows)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        latency(["--engine", str(models["folded"]), "--end-to-end"])
    assert exit_.value.code == 2 and "give --images" in capsys.readouterr().err


@pytest.mark.slow
def test_accuracy_runner_tabulates_resumes_and_plots(digits, tmp_path):
    from benchmarks.run_accuracy import main

    out = tmp_path / "acc"
    argv = ["--data", str(digits), "--out", str(out), "--seeds", "2", "--methods", "disalign,logit-adjust,auto",
            "--rhos", "0,1", "--stage1-epochs", "1", "--min-steps", "10", "--head", "cosine"]
    assert main(argv) == 0
    doc = json.loads((out / "table.json").read_text())
    assert set(doc["table"]) == {"stage1", "disalign", "logit-adjust", "auto"}
    assert [r["seed"] for r in doc["auto"]] == [0, 1] and all(r["best_single"] != "auto" for r in doc["auto"])
    assert "--method auto against the best single method" in (out / "table.md").read_text()
    mean, std = doc["table"]["disalign"]["top1"]
    assert 0 <= mean <= 1 and std >= 0
    assert set(doc["rho_sweep"]) == {"rho 0", "rho 1"}
    assert "| disalign |" in (out / "table.md").read_text()
    for png in ("rho_curve.png", "disalign_per_class.png", "disalign_confusion.png", "disalign_sigma.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert 0 <= doc["table"]["disalign"]["val"] <= 1 and 0 <= doc["stage1_train_top1"] <= 1
    assert "| method | overall | many | medium | few | val |" in (out / "table.md").read_text()
    stamp = (out / "seed0" / "stage1.pt").stat().st_mtime_ns
    assert main(argv) == 0  # resumed: finished runs are reused, not retrained
    assert (out / "seed0" / "stage1.pt").stat().st_mtime_ns == stamp
    # another stage 2 on the same stage-1 models: nothing of stage 1 is trained again
    other = tmp_path / "lr"
    assert main(["--data", str(digits), "--out", str(other), "--seeds", "2", "--methods", "crt", "--rhos", "",
                 "--min-steps", "10", "--stage1-from", str(out), "--stage2-args", "--lr 0.02"]) == 0
    assert not (other / "seed0" / "stage1.pt").exists() and (out / "seed0" / "stage1.pt").stat().st_mtime_ns == stamp
    assert (other / "seed0" / "stage1.eval.json").exists()  # scored on this run's data, kept with this run
    ckpt = torch.load(other / "seed1" / "crt.pt", weights_only=True)
    assert ckpt["history"]["args"]["lr"] == 0.02
    assert json.loads((other / "table.json").read_text())["stage1_from"] == str(out)


def test_evaluate_writes_plots(models, digits, tmp_path):
    from training.evaluate import main

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([str(models["disalign"]), "--data", str(digits), "--compare", str(models["stage1"]), "--plots",
                     str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disalign_confusion.png", "disalign_per_class.png",
                                                         "disalign_sigma.png"]
    assert printed.getvalue().count("\n") >= 4 and "stage1 " in printed.getvalue()


def test_nms_cap_counts_candidates_at_scale(tmp_path, capsys):
    """`nms_cap.py --scale K`: candidates per photo-sized scene for a K-class random detector, per cap."""
    from benchmarks.nms_cap import main

    out = tmp_path / "caps.json"
    assert main(["--scale", "30", "--caps", "none,0:50,2:0", "--photos", str(tmp_path / "photos"),
                 "--json", str(out)]) == 0
    rows = {r["cap"]: r["candidates"] for r in json.loads(out.read_text())["rows"]}
    assert len(rows["none"]) == 2 and min(rows["none"]) > 50  # two scenes, more candidates than the cap
    assert rows["0:50"] == [50, 50]
    assert all(c <= 2 * 30 for c in rows["2:0"])  # at most 2 per class


def test_make_seg_models_writes_both_checkpoints(tmp_path):
    from benchmarks.make_seg_models import main
    from training.checkpoints import read_checkpoint

    assert main(["--out", str(tmp_path), "--model", "small_seg", "--classes", "7", "--size", "32"]) == 0
    stage1, disalign = (read_checkpoint(str(tmp_path / f"{n}.pt")) for n in ("stage1", "disalign"))
    assert stage1.description.num_classes == disalign.description.num_classes == 7
    assert stage1.model.calibrator is None and disalign.description.calibration["method"] == "disalign"


def test_recipe_study_tabulates_variants_on_shared_stage1(digits, tmp_path):
    from benchmarks.recipe_study import main

    out = tmp_path / "recipe"
    assert main(["--data", str(digits), "--out", str(out), "--seeds", "1", "--stage1-epochs", "1",
                 "--min-steps", "10", "--variants", "stage 2: lr 0.02", "--methods", "crt,logit-adjust",
                 "--no-auto"]) == 0
    doc = json.loads((out / "recipe.json").read_text())
    assert list(doc["variants"]) == ["default", "stage 2: lr 0.02"]  # the default comes along for its stage 1
    assert not (out / "stage-2-lr-0.02" / "seed0" / "stage1.pt").exists()
    text = (out / "recipe.md").read_text()
    assert text.startswith("test top-1") and "\nval top-1" in text
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith(("| default |", "| stage 2: lr"))]
    assert len(rows) == 4 and rows[0][1:3] == rows[1][1:3]  # the same stage 1: its train and test cells agree
    assert set(doc["variants"]["default"]["table"]) == {"stage1", "crt", "logit-adjust"}
