import json

from conftest import PY, run


def test_latency_benchmark_writes_table_and_json(models, tmp_path):
    out = tmp_path / "lat.json"
    r = run(PY, "benchmarks/run_latency.py", "--engine", str(models["stage1_onnx"]), "--engine",
            str(models["folded"]), "--torch", str(models["disalign"]), "--batch", "1,4", "--rounds", "1",
            "--runs", "3", "--warmup", "1", "--json", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    rows = doc["results"]
    assert len(rows) == 6 and {row["batch"] for row in rows} == {1, 4}
    first = [row for row in rows if row["engine"] == str(models["stage1_onnx"])]
    assert all(row["ratio_to_first"] == 1.0 for row in first)
    assert all(0 < row["p50"] <= row["p90"] <= row["p99"] for row in rows)
    assert doc["environment"]["threads"] >= 1 and "p50 ms" in r.stdout
