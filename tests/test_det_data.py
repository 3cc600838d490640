"""det-lt data, the LVIS loader, repeat factors and the LVIS evaluator wiring."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from ltdeploy.datasets.det_sources import lvis_frequency as frequency_group
from ltdeploy.datasets.det_sources import resolve_det_source
from ltdeploy.evaluation.lvis_ap import lvis_ap
from ltdeploy.preprocess import PreprocessConfig
from training.detection.data import LVISDataset, RepeatFactorSampler, decode_mask, hflip, repeat_factors
from training.detection.pcb import pairwise_bias
from training.detection.synthetic import image_counts
from training.make_data import main as make_data


@pytest.fixture(scope="module")
def det_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("det") / "det-lt")
    assert make_data(["det-lt", "--out", root, "--classes", "12", "--train-images", "40", "--val-images", "12",
                      "--size", "96"]) == 0
    return root


def test_lvis_fields_and_groups(det_root: str) -> None:
    with open(os.path.join(det_root, "annotations", "train.json")) as f:
        data = json.load(f)
    cats = data["categories"]
    assert [c["id"] for c in cats] == list(range(1, 13))
    for c in cats:
        assert c["frequency"] == frequency_group(c["image_count"])
        assert c["instance_count"] >= c["image_count"] >= 1
    img = data["images"][0]
    present = {a["category_id"] for a in data["annotations"] if a["image_id"] == img["id"]}
    assert set(img["neg_category_ids"]) == set(range(1, 13)) - present
    assert img["not_exhaustive_category_ids"] == []
    kinds = {type(a["segmentation"]).__name__ for a in data["annotations"]}
    assert kinds <= {"list", "dict"} and "list" in kinds


def test_image_counts_span_lvis_groups() -> None:
    counts = image_counts(50, 250)
    assert counts[0] == 250 and counts[-1] == 1 and all(np.diff(counts) <= 0)
    groups = [frequency_group(int(n)) for n in counts]
    assert {"r", "c", "f"} == set(groups)


def test_loader_boxes_labels_masks(det_root: str) -> None:
    ds = LVISDataset(resolve_det_source(det_root), "train", PreprocessConfig.fit(96, 96), masks=True)
    img, t = ds[0]
    assert img.shape == (3, 96, 96) and 0 <= float(img.min()) and float(img.max()) <= 1
    anns = ds.anns[ds.images[0]["id"]]
    assert len(t["boxes"]) == len(t["labels"]) == len(t["masks"]) == len(anns)
    for box, mask, a in zip(t["boxes"], t["masks"], anns):
        ys, xs = np.nonzero(mask.numpy())
        assert int(mask.sum()) == a["area"]  # the decoded mask is the annotated area
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    flipped, ft = hflip(img, t)
    assert ft["boxes"][:, 0].tolist() == (96 - t["boxes"][:, 2]).tolist()
    assert bool((ft["masks"] == t["masks"].flip(-1)).all())


def test_decode_mask_polygon_and_rle() -> None:
    square = [[2.0, 2.0, 7.0, 2.0, 7.0, 7.0, 2.0, 7.0]]
    m = decode_mask(square, 10, 12)
    assert m.shape == (10, 12) and m[4, 4] == 1 and m[0, 0] == 0
    assert decode_mask({"size": [10, 12], "counts": [120]}, 10, 12).sum() == 0  # uncompressed RLE: runs of 0, 1
    first_column = decode_mask({"size": [10, 12], "counts": [0, 10, 110]}, 10, 12)  # column-major
    assert first_column[:, 0].all() and first_column.sum() == 10


def test_repeat_factors_follow_lvis_formula(det_root: str) -> None:
    ds = LVISDataset(resolve_det_source(det_root), "train")
    t = 0.3
    freq = np.asarray(ds.image_counts()) / len(ds)
    r_cat = np.maximum(1, np.sqrt(t / freq))
    factors = repeat_factors(ds, t)
    for i, r in enumerate(factors):
        labels = ds.labels_of(i)
        assert r == pytest.approx(max((r_cat[c - 1] for c in labels), default=1.0))
    rare_image = int(np.argmax(factors))
    assert factors[rare_image] == pytest.approx(math.sqrt(t / (min(ds.image_counts()) / len(ds))))
    sampler = RepeatFactorSampler(factors, seed=1)
    draws = [np.bincount(list(sampler), minlength=len(ds)) for sampler.epoch in range(200)]
    assert np.mean(draws, 0) == pytest.approx(factors, abs=0.15)  # stochastic rounding is unbiased
    halves = [list(RepeatFactorSampler(factors, seed=1, rank=r, world=2)) for r in (0, 1)]
    assert len(halves[0]) == len(halves[1])


def test_evaluator_gives_ap_1_on_ground_truth(det_root: str) -> None:
    gt = os.path.join(det_root, "annotations", "val.json")
    with open(gt) as f:
        anns = json.load(f)["annotations"]
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
             "segmentation": a["segmentation"], "score": 0.9} for a in anns]
    for iou_type in ("bbox", "segm"):
        ap = lvis_ap(gt, dets, iou_type)
        assert ap["AP"] == ap["AP50"] == 100.0
        assert all(ap[k] in (100.0, -1.0) for k in ("APr", "APc", "APf"))
    wrong = [dict(d, category_id=d["category_id"] % 12 + 1) for d in dets]  # every label shifted
    assert lvis_ap(gt, wrong, "bbox")["AP"] < 100.0


def test_pairwise_bias() -> None:
    assert pairwise_bias(np.eye(3)) == 0.0
    m = np.array([[0.5, 0.5], [0.0, 1.0]])
    assert pairwise_bias(m) == pytest.approx(math.sqrt(2 * 0.25))


def test_batches_keep_to_one_aspect_ratio_and_ranks_make_as_many(det_root: str) -> None:
    from training.detection.data import AspectRatioBatches, aspect_groups

    ds = LVISDataset(resolve_det_source(det_root), "train")
    groups = aspect_groups(ds)
    assert set(groups) == {0, 1}  # det-lt draws landscape, square and portrait images
    factors = repeat_factors(ds, 0.5)
    counts = []
    for rank in range(2):
        sampler = RepeatFactorSampler(factors, seed=3, rank=rank, world=2)
        batches = list(AspectRatioBatches(sampler, groups, 4))
        drawn = [i for b in batches for i in b]
        assert sorted(drawn) == sorted(sampler) and len(batches) == len(AspectRatioBatches(sampler, groups, 4))
        full_mixed = [b for b in batches[:-2] if len({groups[i] for i in b}) > 1]
        assert full_mixed == []  # only the last batches, the groups' remainders, may mix
        counts.append(len(batches))
    assert counts[0] == counts[1]  # every rank steps as often: no rank waits at the end of an epoch
