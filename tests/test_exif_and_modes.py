"""Photos as cameras write them (EXIF orientation) are read in the frame the user sees, by every task; the
files ltdeploy writes honour the umask."""
from __future__ import annotations

import os
import stat

import cv2
import numpy as np
import pytest
from PIL import Image

from ltdeploy.image_io import read_image
from tests.conftest import PY, ltdeploy_cli, run

# orientation → how the stored pixels turn into the displayed ones (np.rot90's k: counter-clockwise turns)
TURNS = {3: 2, 6: -1, 8: 1}


def exif_jpeg(displayed: np.ndarray, orientation: int, path) -> str:
    """A JPEG whose stored pixels, turned by its EXIF orientation, show `displayed` (RGB)."""
    stored = np.ascontiguousarray(np.rot90(displayed, -TURNS[orientation]))
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, quality=100, exif=exif.tobytes())
    return str(path)


def as_displayed_png(jpeg: str, orientation: int, path) -> str:
    """The JPEG's own decoded pixels, turned by hand and stored losslessly without EXIF."""
    raw = cv2.imdecode(np.fromfile(jpeg, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    cv2.imwrite(str(path), np.ascontiguousarray(np.rot90(raw, TURNS[orientation])))
    return str(path)


@pytest.mark.parametrize("orientation", sorted(TURNS))
def test_decoding_applies_exif_orientation(tmp_path, orientation):
    displayed = np.zeros((60, 100, 3), np.uint8)
    displayed[:, :50] = 255  # the left half is white as the user sees it
    img = read_image(exif_jpeg(displayed, orientation, tmp_path / "photo.jpg"))
    assert img.shape == (60, 100, 3)
    assert img[:, :45].mean() > 240 and img[:, 55:].mean() < 15


def _photos(tmp_path, source: str) -> list[tuple[str, str]]:
    """(EXIF-rotated JPEG, the same pixels upright as PNG) for each orientation, from one dataset image."""
    rgb = read_image(source)
    rgb = cv2.resize(rgb, (rgb.shape[1] * 3 // 2, rgb.shape[0]))  # not square, so a turn changes the shape
    pairs = []
    for o in sorted(TURNS):
        jpeg = exif_jpeg(rgb, o, tmp_path / f"o{o}.jpg")
        pairs.append((jpeg, as_displayed_png(jpeg, o, tmp_path / f"o{o}.png")))
    return pairs


def _same_predictions(engine: str, pairs: list[tuple[str, str]]) -> None:
    from ltdeploy.predictor import Predictor

    predictor = Predictor(engine)
    for jpeg, png in pairs:
        a, b = list(predictor.predict([jpeg, png]))
        da, db = a.to_dict(), b.to_dict()
        for d in (da, db):
            d.pop("path", None)
            d.pop("image", None)
        assert da == db, (jpeg, da, db)
        if hasattr(a, "labels"):
            assert a.labels.shape == read_image(png).shape[:2]


def test_classifier_and_segmenter_see_the_displayed_frame(models, digits, seg_runs, tmp_path):
    digit = str(digits / (digits / "test.txt").read_text().split()[0])
    _same_predictions(str(models["folded"]), _photos(tmp_path, digit))
    data, paths = seg_runs
    first = sorted(os.listdir(data / "images" / "val"))[0]
    (tmp_path / "seg").mkdir()
    _same_predictions(str(paths["onnx"]), _photos(tmp_path / "seg", str(data / "images" / "val" / first)))


def test_files_written_honour_the_umask(models, digits, seg_runs, tmp_path):
    script = ("import os, sys, runpy; os.umask(0o022); sys.argv = sys.argv[1:]; "
              "runpy.run_path(sys.argv[0], run_name='__main__')")
    onnx = tmp_path / "m.onnx"
    r = run(PY, "-c", script, "export/to_onnx.py", str(models["disalign"]), "-o", str(onnx))
    assert r.returncode == 0, r.stderr
    outputs = tmp_path / "out"
    data, paths = seg_runs
    photo = str(data / "images" / "val" / sorted(os.listdir(data / "images" / "val"))[0])
    cli = "import os; os.umask(0o022); from ltdeploy.cli import main; main()"
    for args in (["predict", photo, "--engine", str(paths["onnx"]), "--out", str(outputs)],
                 ["val", "--engine", str(onnx), "--data", str(digits), "--json", str(tmp_path / "val.json")],
                 ["export-triton", "--engine", str(onnx), "--repo", str(tmp_path / "repo"), "--layout", "python"]):
        r = run(PY, "-c", cli, *args)
        assert r.returncode == 0, (args, r.stderr)
    written = [onnx, tmp_path / "val.json", *outputs.rglob("*"), *(tmp_path / "repo").rglob("*")]
    files = [p for p in written if p.is_file()]
    assert len(files) >= 4
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
    assert ltdeploy_cli("info", "--engine", str(onnx)).returncode == 0
