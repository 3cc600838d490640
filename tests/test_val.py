"""`ltdeploy val`: the same numbers as training/evaluate.py on the same ONNX, engines side by side with their
differences, the per-class CSV and plot, no torch, and one line for bad input with nothing half-written."""
import csv
import json
import sys

import pytest
from click.testing import CliRunner
from conftest import run

from ltdeploy.cli import cli


def val(*args: str):
    return CliRunner().invoke(cli, ["val", *args])


def evaluate_json(model, data, out, *extra) -> dict:
    from training.evaluate import main as evaluate

    assert evaluate([str(model), "--data", str(data), "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_classification_equals_training_evaluation(models, digits, tmp_path):
    r = val("-e", str(models["stage1_onnx"]), "-e", str(models["folded"]), "--data", str(digits),
            "--json", str(tmp_path / "val.json"), "--csv", str(tmp_path / "val.csv"), "--plots", str(tmp_path))
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "val.json").read_text())
    first, second = doc["engines"]
    for engine, name in ((first, "stage1_onnx"), (second, "folded")):
        want = evaluate_json(models[name], digits, tmp_path / f"{name}.json")
        for k in ("top1", "many", "medium", "few"):
            assert engine["columns"][k] == pytest.approx(want[k], abs=1e-12), (name, k)
        assert engine["per_class"] == want["per_class"]
    assert doc["split"] == "test" and doc["images"] == 500
    assert second["delta_to_first"]["few"] == pytest.approx(100 * (second["columns"]["few"] -
                                                                   first["columns"]["few"]), abs=0.01)
    assert "  vs stage1.onnx" in r.output and r.output.count("\n") >= 5
    rows = list(csv.reader((tmp_path / "val.csv").open()))
    assert rows[0][:5] == ["class", "class_id", "name", "train_count", "group"] and len(rows) == 11
    assert float(rows[1][-1]) == pytest.approx(float(rows[1][6]) - float(rows[1][5]), abs=1e-3)
    assert (tmp_path / "per_class_change.png").read_bytes()[:4] == b"\x89PNG"


def test_segmentation_equals_training_evaluation(seg_runs, tmp_path):
    data, paths = seg_runs
    r = val("-e", str(paths["onnx"]), "-e", str(paths["labels"]), "--data", str(data), "--json",
            str(tmp_path / "val.json"))
    assert r.exit_code == 0, r.output
    engines = json.loads((tmp_path / "val.json").read_text())["engines"]
    want = evaluate_json(paths["onnx"], data, tmp_path / "eval.json")
    for k in ("mIoU", "head_mIoU", "body_mIoU", "tail_mIoU", "mAcc", "tail_mAcc"):
        assert engines[0]["columns"][k] == want[k] and engines[1]["columns"][k] == pytest.approx(want[k], abs=1e-9)
    assert engines[0]["per_class"] == want["per_class_iou"]
    assert engines[1]["delta_to_first"]["mIoU"] == pytest.approx(0, abs=1e-6)  # logits and label-map graphs agree


def test_val_and_quantize_never_import_torch(models, digits, tmp_path):
    probe = (
        "import json, sys\n"
        "from click.testing import CliRunner\n"
        "from ltdeploy.cli import cli\n"
        f"a = CliRunner().invoke(cli, ['quantize', {str(models['folded'])!r}, '-o', {str(tmp_path / 'q.onnx')!r},"
        f" '--calib', {str(digits)!r}, '--calib-images', '16'])\n"
        f"b = CliRunner().invoke(cli, ['val', '-e', {str(tmp_path / 'q.onnx')!r}, '--data', {str(digits)!r}])\n"
        "print(json.dumps({'codes': [a.exit_code, b.exit_code], 'out': a.output + b.output,"
        " 'modules': sorted(sys.modules)}))\n")
    r = run(sys.executable, "-c", probe)
    out = json.loads(r.stdout.strip().split("\n")[-1])
    assert out["codes"] == [0, 0], out["out"]
    assert "onnxruntime.quantization" in out["modules"] and "few" in out["out"]
    leaked = [m for m in out["modules"] if m.split(".")[0] in ("torch", "torchvision", "timm", "training", "export")]
    assert leaked == []


def test_bad_input_is_one_line_and_writes_nothing(models, digits, seg_runs, tmp_path):
    data, paths = seg_runs
    out = tmp_path / "v.json"
    cases = [
        (["-e", str(models["folded"]), "--data", str(tmp_path / "missing")], "missing"),
        (["-e", str(models["folded"]), "--data", str(data)], "not a classification dataset"),  # a segmenter's dataset
        (["-e", str(models["folded"]), "-e", str(paths["onnx"]), "--data", str(digits)], "val compares engines"),
        (["-e", str(tmp_path / "nope.onnx"), "--data", str(digits)], "no such engine file"),
    ]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "test.txt").write_text((digits / "test.txt").read_text().replace("images/", "gone/", 1))
    (broken / "classes.txt").write_text((digits / "classes.txt").read_text())
    cases.append((["-e", str(models["folded"]), "--data", str(broken)], "no such file"))
    for args, message in cases:
        r = val(*args, "--json", str(out), "--csv", str(tmp_path / "v.csv"))
        assert r.exit_code == 2, (args, r.output)
        error = [line for line in r.output.splitlines() if line.startswith("error:")]
        assert len(error) == 1 and message in error[0], (args, r.output)
        assert "Traceback" not in r.output
        assert not out.exists() and not (tmp_path / "v.csv").exists()
