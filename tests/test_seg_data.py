import numpy as np
import pytest

from ltdeploy.datasets.seg_folders import IGNORE, pixel_counts, read_label_map, read_seg_split
from ltdeploy.errors import DatasetError


@pytest.fixture(scope="module")
def seg(tmp_path_factory):
    from training.make_data import main
    out = tmp_path_factory.mktemp("seg") / "seg-lt"
    assert main(["seg-lt", "--out", str(out)]) == 0
    return out


def test_seg_lt_layout_and_long_tail(seg):
    train, val = read_seg_split(str(seg), "train"), read_seg_split(str(seg), "val")
    assert len(train.images) == 400 and len(val.images) == 100 and len(train.class_names) == 30
    counts = np.array(pixel_counts(train))
    share = counts / counts.sum()
    assert (counts > 0).all()  # every class is present in training
    assert share[:2].sum() > 0.8  # stuff covers most pixels
    assert (share < 0.001).sum() >= 10  # a real tail
    val_counts = np.array(pixel_counts(val))
    assert (val_counts[3:] > 0).mean() > 0.9  # val measures (almost) every object class


def test_label_maps_are_single_channel_with_ignore(seg):
    train = read_seg_split(str(seg), "train")
    lab = read_label_map(train.labels[0])
    assert lab.dtype == np.uint8 and lab.ndim == 2
    assert IGNORE in np.unique(np.concatenate([read_label_map(p).ravel() for p in train.labels[:20]]))


def test_ade20k_folder_names_and_unpaired_images(tmp_path):
    import cv2
    for d in ("images/training", "annotations/training"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "classes.txt").write_text("a\nb\n")
    cv2.imwrite(str(tmp_path / "images/training/x.jpg"), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "annotations/training/x.png"), np.ones((4, 4), np.uint8))
    s = read_seg_split(str(tmp_path), "train")
    assert pixel_counts(s) == [0, 16]
    cv2.imwrite(str(tmp_path / "images/training/y.jpg"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DatasetError, match="no annotation"):
        read_seg_split(str(tmp_path), "train")
