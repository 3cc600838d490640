import contextlib
import io
import json


def test_checkpoint_and_onnx_give_the_same_numbers(models, digits, tmp_path):
    from training.evaluate import main

    results = {}
    for name in ("disalign", "folded", "naive"):
        out = tmp_path / f"{name}.json"
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert main([str(models[name]), "--data", str(digits), "--json", str(out)]) == 0
        assert "many >" in printed.getvalue() and "few <" in printed.getvalue()
        results[name] = json.loads(out.read_text())
    ref = results["disalign"]
    assert len(ref["per_class"]) == 10 and 0 <= ref["top1"] <= 1
    for name in ("folded", "naive"):
        assert results[name]["per_class"] == ref["per_class"]
        assert results[name]["top1"] == ref["top1"]


def test_disalign_moves_accuracy_toward_the_tail(models, digits):
    """Even a 3-epoch stage 1 is biased to the head; DisAlign moves accuracy from the head to the tail."""
    from training.evaluate import main
    rows = {}
    for name in ("stage1", "disalign"):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main([str(models[name]), "--data", str(digits)]) == 0
        rows[name] = buf.getvalue().strip().split("\n")[-1].split()
    few_before, few_after = float(rows["stage1"][-1]), float(rows["disalign"][-1])
    many_before, many_after = float(rows["stage1"][2]), float(rows["disalign"][2])
    # strictly: the 3-epoch stage 1 gets few-shot classes at most partly right, so "not lower" would also
    # pass with both at 0; the calibration must trade head accuracy for tail accuracy
    assert few_after > few_before and many_after <= many_before, rows
