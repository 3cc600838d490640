import json

import pytest

from ltdeploy.errors import MetadataError
from ltdeploy.metadata import ModelDescription, default_group_thresholds, frequency_group
from ltdeploy.preprocess import PreprocessConfig


def desc() -> ModelDescription:
    return ModelDescription(task="classification", class_names=["a", "b", "c"], class_counts=[150, 50, 3],
                            group_thresholds=(100, 20), preprocess=PreprocessConfig((32, 32), 0, "bilinear",
                                                                                  (0.5,) * 3, (0.5,) * 3),
                            input_name="images", output_names=["logits"], calibration={"method": "disalign"},
                            provenance={"seed": 0})


def test_round_trip_and_groups():
    d = desc()
    back = ModelDescription.from_json(d.to_json())
    assert back == d
    assert back.groups == ["many", "medium", "few"]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(schema="ltdeploy.model/99"), "schema"),
    (lambda d: d.update(surprise=1), "unknown"),
    (lambda d: d.pop("class_counts"), "missing"),
    (lambda d: d.update(task="poetry"), "task"),
    (lambda d: d.update(class_counts=[1, 2]), "class counts"),
])
def test_strict_parsing(mutate, message):
    d = desc().to_dict()
    mutate(d)
    with pytest.raises(MetadataError, match=message):
        ModelDescription.from_dict(d)


def test_not_json():
    with pytest.raises(MetadataError, match="not valid JSON"):
        ModelDescription.from_json("{nope")


def test_group_thresholds():
    assert default_group_thresholds([1280, 500, 5]) == (100, 20)  # ImageNet-LT scale
    many, few = default_group_thresholds([104, 2])
    assert 2 < few < many < 104
    assert [frequency_group(n, 100, 20) for n in (101, 100, 20, 19)] == ["many", "medium", "medium", "few"]
    json.dumps(default_group_thresholds([10, 1]))


def test_older_descriptions_read_or_are_refused_with_a_reason():
    old = desc().to_dict()
    old["schema"] = "ltdeploy.model/1"
    del old["class_ids"]
    for k in ("resize", "max_size"):
        del old["preprocess"][k]
    back = ModelDescription.from_dict(old)  # a classifier reads the same as before
    assert back.class_ids == [0, 1, 2] and back.preprocess.resize == "stretch"
    with pytest.raises(MetadataError, match="squashes images to a square; re-export it"):
        ModelDescription.from_dict(dict(old, task="detection"))


def test_class_ids_are_kept_and_checked():
    d = desc()
    sparse = ModelDescription.from_json(ModelDescription(**{**d.__dict__, "class_ids": [1, 18, 90]}).to_json())
    assert sparse.class_ids == [1, 18, 90]
    with pytest.raises(MetadataError, match="class ids"):
        ModelDescription(**{**d.__dict__, "class_ids": [1, 1, 2]})
