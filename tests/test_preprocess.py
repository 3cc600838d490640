import numpy as np
import pytest

from ltdeploy.detect import to_image
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


def test_fit_keeps_the_aspect_ratio_within_both_limits():
    cfg = PreprocessConfig.fit(800, 1333)
    assert cfg.geometry(480, 640).model_size == (800, 1067)  # short side to 800
    assert cfg.geometry(640, 480).model_size == (1067, 800)
    assert cfg.geometry(400, 1600).model_size == (333, 1333)  # the long side caps first
    x = preprocess_image(np.zeros((48, 64, 3), np.uint8), PreprocessConfig.fit(30, 64))
    assert x.shape == (3, 30, 40)
    with pytest.raises(ValueError, match="one at a time"):
        from ltdeploy.preprocess import preprocess_batch
        preprocess_batch([np.zeros((8, 8, 3), np.uint8)], cfg)


def test_geometry_maps_boxes_and_masks_back_to_the_image():
    geo = PreprocessConfig.fit(800, 1333).geometry(480, 640)
    boxes = np.array([[10.0, 20.0, 330.0, 470.0]])
    model = geo.boxes_to_model(boxes)
    np.testing.assert_allclose(model, boxes * 800 / 480, rtol=1e-3)
    np.testing.assert_allclose(geo.boxes_to_image(model), boxes, atol=1e-9)
    # a detection's 28 x 28 mask probabilities are pasted into its box at the image's own pixels
    dets = to_image({"boxes": model, "scores": np.ones(1), "labels": np.ones(1), "masks": np.ones((1, 1, 28, 28))},
                    geo)
    mask = dets["masks"][0].full()
    assert mask.shape == (480, 640) and mask[40:450, 30:310].all() and not mask[:18].any() and not mask[:, 333:].any()
    assert mask.sum() == pytest.approx(320 * 450, rel=0.02)
    crop = CFG.geometry(16, 32)  # crop: what the centre crop cut off stays empty on the way back
    back = crop.labels_to_image(np.ones((4, 6), np.uint8))
    # 16x32 → 8x16, crop rows 2..6 and columns 5..11, which are rows 4..12 and columns 10..22 of the image
    assert back.shape == (16, 32) and back[5:11, 11:21].all()
    assert not back[:3].any() and not back[:, :9].any() and not back[:, 23:].any()


def test_legacy_fields_read_as_crop_or_stretch():
    old = {k: v for k, v in CFG.to_dict().items() if k not in ("resize", "max_size")}
    assert PreprocessConfig.from_dict(old, legacy=True) == CFG and CFG.resize == "crop"
    with pytest.raises(MetadataError, match="missing"):
        PreprocessConfig.from_dict(old)
