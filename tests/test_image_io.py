import os

import cv2
import numpy as np
import pytest

from ltdeploy.errors import ImageError
from ltdeploy.image_header import header_size
from ltdeploy.image_io import expand_sources, read_image
from ltdeploy.outputs import output_stems


def test_colour_png_is_returned_as_rgb(tmp_path):
    rgb = np.zeros((5, 7, 3), np.uint8)
    rgb[..., 0] = 200  # red
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = read_image(tmp_path / "a.png")
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    assert out[..., 0].min() == 200 and out[..., 2].max() == 0


def test_grayscale_rgba_and_16bit_are_converted(tmp_path):
    cv2.imwrite(str(tmp_path / "g.png"), np.full((4, 4), 77, np.uint8))
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 2], rgba[..., 3] = 255, 10  # BGRA: red, nearly transparent
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((4, 4, 3), 65535, np.uint16))
    assert (read_image(tmp_path / "g.png") == 77).all()
    assert read_image(tmp_path / "rgba.png")[0, 0].tolist() == [255, 0, 0]
    assert (read_image(tmp_path / "deep.png") == 255).all()


def test_truncated_jpeg_is_refused(tmp_path):
    ok, buf = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = buf.tobytes()
    (tmp_path / "whole.jpg").write_bytes(data)
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert read_image(tmp_path / "whole.jpg").shape == (64, 64, 3)
    with pytest.raises(ImageError, match="truncated JPEG"):
        read_image(tmp_path / "cut.jpg")


@pytest.mark.parametrize("name, content, message", [
    ("missing.png", None, "no such file"),
    ("notes.png", b"this is text, not pixels", "not a decodable image"),
    ("empty.jpg", b"", "empty file"),
])
def test_unreadable_files(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageError, match=message):
        read_image(tmp_path / name)


def test_directory(tmp_path):
    with pytest.raises(ImageError, match="is a directory"):
        read_image(tmp_path)
    with pytest.raises(ImageError, match="holds no images"):
        expand_sources([str(tmp_path)])
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((2, 2), np.uint8))
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((2, 2), np.uint8))
    assert [p.rsplit("/", 1)[1] for p in expand_sources([str(tmp_path)])] == ["a.png", "b.png"]


@pytest.mark.parametrize("suffix, params", [(".png", []), (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
                                            (".bmp", []), (".webp", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
                                            (".tif", [])])
def test_header_size_without_decoding(suffix, params):
    ok, buf = cv2.imencode(suffix, np.zeros((37, 53, 3), np.uint8), params)
    assert ok and header_size(buf) == (53, 37)
    assert header_size(b"not an image at all") is None


def test_jpeg_size_behind_a_large_exif_block():
    ok, buf = cv2.imencode(".jpg", np.zeros((20, 30, 3), np.uint8))
    data = buf.tobytes()
    app1 = b"\xff\xe1" + (65533 + 2).to_bytes(2, "big") + bytes(65533)  # the largest APP1 segment
    assert header_size(data[:2] + app1 + app1 + data[2:]) == (30, 20)


def test_output_stems_never_collide(tmp_path):
    paths = [str(tmp_path / p) for p in ("a/x.png", "b/x.png", "a/y.png", "a/y.jpg", "a/sub/z.png")]
    stems = output_stems(paths, "out")
    assert [os.path.relpath(stems[p], "out") for p in paths] == ["a/x", "b/x", "a/y_png", "a/y_jpg", "a/sub/z"]
    assert output_stems([str(tmp_path / "a" / "x.png")], "out") == {str(tmp_path / "a" / "x.png"): "out/x"}
