"""The runtime must never import torch: deployment machines may not have it, and it costs seconds."""
import json
import sys

from conftest import run

PROBE = """
import json, sys
from ltdeploy.cli import main
sys.argv = ["ltdeploy", "predict", {image!r}, "--engine", {engine!r}]
try:
    main()
except SystemExit as exc:
    code = exc.code
print(json.dumps({{"code": code, "modules": sorted(sys.modules)}}))
"""


def test_predict_never_imports_torch(models, digits):
    image = str(digits / (digits / "test.txt").read_text().split(" ")[0])
    r = run(sys.executable, "-c", PROBE.format(image=image, engine=str(models["folded"])))
    out = json.loads(r.stdout.strip().split("\n")[-1])
    assert out["code"] in (None, 0), r.stderr
    assert "onnxruntime" in out["modules"]  # the probe really ran a prediction
    leaked = [m for m in out["modules"] if m.split(".")[0] in ("torch", "torchvision", "timm", "training", "export")]
    assert leaked == []


def test_the_command_line_loads_without_numpy_or_opencv():
    """Every `ltdeploy` command (`--help`, `info`, ...) starts by loading the command line: its modules, the
    calibrate and val commands' included, leave numpy, OpenCV, onnx and ONNX Runtime to the commands that run."""
    r = run(sys.executable, "-c", "import json, sys, ltdeploy.cli; print(json.dumps(sorted(sys.modules)))")
    heavy = [m for m in json.loads(r.stdout) if m.split(".")[0] in ("numpy", "cv2", "onnx", "onnxruntime", "tqdm")]
    assert r.returncode == 0 and heavy == [], (r.stderr, heavy[:5])
