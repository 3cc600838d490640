import numpy as np
import pytest

from ltdeploy.errors import MetadataError
from ltdeploy.preprocess import PreprocessConfig, preprocess_image

CFG = PreprocessConfig(input_size=(4, 6), resize_short=8, interpolation="bilinear",
                       mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))


def test_resize_short_side_then_centre_crop_then_normalise():
    img = np.zeros((16, 32, 3), np.uint8)
    img[:, :, 0] = 255
    img[:, 16, 1] = 255  # a column marking the horizontal centre
    x = preprocess_image(img, CFG)
    assert x.shape == (3, 4, 6) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], 1.0)          # (1 - 0.5) / 0.5
    np.testing.assert_allclose(x[2], 0.0)          # (0 - 0) / 1
    # 16x32 → 8x16 → crop cols 5..11: the marked column (now at 8) lies inside the crop, not at an edge
    assert x[1].max() > x[1].min()
    assert x[1][:, 0].max() == pytest.approx(-1.0)


def test_bgr_order_swaps_channels():
    img = np.zeros((8, 8, 3), np.uint8)
    img[..., 0] = 255
    cfg = PreprocessConfig((8, 8), 0, "nearest", (0, 0, 0), (1, 1, 1), color_order="BGR")
    x = preprocess_image(img, cfg)
    assert x[2].min() == 1.0 and x[0].max() == 0.0


def test_strict_parsing_rejects_unknown_and_missing_fields():
    d = CFG.to_dict()
    assert PreprocessConfig.from_dict(d) == CFG
    with pytest.raises(MetadataError, match="unknown"):
        PreprocessConfig.from_dict({**d, "extra": 1})
    d.pop("mean")
    with pytest.raises(MetadataError, match="missing"):
        PreprocessConfig.from_dict(d)


@pytest.mark.parametrize("kwargs", [{"interpolation": "lanczos9"}, {"resize_short": 2}, {"std": (1, 0, 1)}])
def test_invalid_values_are_refused(kwargs):
    with pytest.raises(MetadataError):
        PreprocessConfig(**{**CFG.to_dict(), **kwargs})
