import numpy as np
import pytest

from ltdeploy.datasets.lists import read_split
from training.classification.synthetic import long_tail_counts
from training.shapes import shape_classes


def test_exponential_profile():
    counts = long_tail_counts(10, 100, 50)
    assert counts[0] == 100 and counts[-1] == 2
    assert all(a >= b for a, b in zip(counts, counts[1:]))


def test_digits_lt_is_long_tailed_with_balanced_eval_splits(digits):
    train, val, test = (read_split(str(digits), s) for s in ("train", "val", "test"))
    counts = sorted(train.class_counts(), reverse=True)
    assert counts[0] / counts[-1] >= 50
    assert set(val.class_counts()) == {20} and set(test.class_counts()) == {50}
    assert train.class_names == [str(d) for d in range(10)]
    assert not set(train.paths) & set(test.paths)


def test_shapes_lt_generator(tmp_path):
    from training.make_data import main
    assert main(["shapes-lt", "--out", str(tmp_path / "s"), "--classes", "60", "--n-max", "20",
                 "--imbalance", "10"]) == 0
    train = read_split(str(tmp_path / "s"), "train")
    assert train.num_classes == 60 and sorted(train.class_counts())[::-1][0] == 20
    assert min(train.class_counts()) == 2
    assert len(set(shape_classes(60))) == 60
    assert not (tmp_path / "s.partial").exists()


def test_imagenet_lt_list_names_and_format(tmp_path):
    (tmp_path / "ImageNet_LT_train.txt").write_text("train/n01/a.JPEG 0\ntrain/n02/b c.JPEG 2\n")
    s = read_split(str(tmp_path), "train")
    assert s.paths[1].endswith("train/n02/b c.JPEG") and s.labels.tolist() == [0, 2]
    assert s.class_names == ["class_0", "class_1", "class_2"]
    (tmp_path / "ImageNet_LT_val.txt").write_text("broken-line-without-label\n")
    with pytest.raises(ValueError, match="expected 'relative/path label'"):
        read_split(str(tmp_path), "val")
    assert np.array_equal(s.class_counts(), [1, 0, 1])


def test_a_small_set_keeps_its_decoded_images_and_a_large_one_streams(digits, monkeypatch):
    import torch

    from ltdeploy.image_io import read_image
    from ltdeploy.preprocess import PreprocessConfig, preprocess_image
    from training.classification.data import ListDataset, make_loader
    from training.core import preload

    split = read_split(str(digits), "train")
    pre = PreprocessConfig(input_size=(32, 32), resize_short=0, interpolation="bilinear", mean=(0.5,) * 3,
                           std=(0.5,) * 3)
    decoded = [read_image(p) for p in split.paths]
    assert preload.decoded_bytes(split.paths, (1, 1)) == sum(im.size for im in decoded)  # from the headers
    held = make_loader(split, pre, 16, shuffle=False).dataset
    assert isinstance(held, preload.InMemory) and len(held) == len(split.paths)
    rgb, label = held.items[3]  # the image as decoded, not the model's floats
    assert rgb.dtype == np.uint8 and np.array_equal(rgb, decoded[3]) and label == split.labels[3]
    x, y = held[3]  # mapped on fetch by the runtime's preprocessing
    assert torch.equal(x, torch.from_numpy(preprocess_image(decoded[3], pre))) and y == label
    monkeypatch.setattr(preload, "PRELOAD_LIMIT_BYTES", sum(im.size for im in decoded))  # one byte too few
    assert isinstance(make_loader(split, pre, 16, shuffle=False).dataset, ListDataset)
