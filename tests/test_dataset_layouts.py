"""Datasets as users download them (LVIS v1, COCO 2017, ADE20K; tiny replicas written by make_data.py
--layout), the one preprocessing that training and the runtime share, and the one-line errors for broken
downloads."""
from __future__ import annotations

import json
import os
import shutil

import cv2
import numpy as np
import pytest
import torch

from ltdeploy.datasets.det_sources import resolve_det_source
from ltdeploy.datasets.seg_folders import IGNORE, ade20k_class_names, pixel_counts, read_seg_split
from ltdeploy.errors import DatasetError
from ltdeploy.evaluation.lvis_ap import lvis_ap, lvis_ground_truth
from ltdeploy.image_io import read_image
from ltdeploy.preprocess import PreprocessConfig, preprocess_image
from training.detection.data import LVISDataset
from training.detection.model import LTDetector
from training.layouts import coco_ids
from training.make_data import main as make_data
from training.train import main as train_main


def _det(tmp_path_factory, layout: str) -> str:
    root = str(tmp_path_factory.mktemp(layout) / layout)
    assert make_data(["det-lt", "--out", root, "--classes", "6", "--train-images", "8", "--val-images", "6",
                      "--size", "64", "--layout", layout]) == 0
    return root


@pytest.fixture(scope="module")
def lvis(tmp_path_factory) -> str:
    return _det(tmp_path_factory, "lvis")


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> str:
    return _det(tmp_path_factory, "coco")


@pytest.fixture(scope="module")
def ade(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("ade") / "ADEChallengeData2016")
    assert make_data(["seg-lt", "--out", root, "--classes", "8", "--train-images", "6", "--val-images", "4",
                      "--layout", "ade20k"]) == 0
    return root


def test_lvis_v1_as_downloaded(lvis: str) -> None:
    assert sorted(os.listdir(lvis)) == ["dataset.json", "lvis_v1_train.json", "lvis_v1_val.json", "train2017",
                                        "val2017"]
    source = resolve_det_source(lvis)
    assert source.layout == "lvis"
    val = LVISDataset(source, "val")
    assert all("file_name" not in im and im["coco_url"].startswith("http://images.cocodataset.org/")
               for im in val.images)
    folders = {os.path.basename(os.path.dirname(p)) for p in val.image_paths()}
    assert folders == {"train2017", "val2017"}  # LVIS val draws from both COCO folders
    train = LVISDataset(source, "train")
    assert train.image_counts() == [c["image_count"] for c in train.categories]


def test_explicit_files_beside_separate_image_folders(lvis: str, tmp_path) -> None:
    """detectron2's layout: the LVIS JSONs in one folder, COCO's images in another."""
    anns = tmp_path / "lvis"
    anns.mkdir()
    for split in ("train", "val"):
        shutil.copy(os.path.join(lvis, f"lvis_v1_{split}.json"), anns)
    source = resolve_det_source(None, str(anns / "lvis_v1_train.json"), str(anns / "lvis_v1_val.json"), lvis)
    assert LVISDataset(source, "val").image_paths() == LVISDataset(resolve_det_source(lvis), "val").image_paths()
    with pytest.raises(DatasetError, match="need --images"):
        resolve_det_source(None, str(anns / "lvis_v1_train.json"))


def test_coco_sparse_ids_crowds_and_groups(coco: str) -> None:
    source = resolve_det_source(coco)
    assert source.layout == "coco"
    train = LVISDataset(source, "train", PreprocessConfig.fit(64, 64))
    assert train.class_ids == coco_ids(6) == [1, 18, 37, 53, 73, 90]
    crowd = [a for a in train.data["annotations"] if a["iscrowd"]]
    assert len(crowd) == 1 and "frequency" not in train.categories[0]
    image = next(i for i, im in enumerate(train.images) if im["id"] == crowd[0]["image_id"])
    _, target = train[image]
    assert len(target["boxes"]) == len(train.anns[crowd[0]["image_id"]]) - 1  # the crowd is not trained on
    # LVIS-mode AP needs frequencies and negative sets: computed from training image counts, exhaustively
    val = LVISDataset(source, "val")
    gt = lvis_ground_truth(val.data, dict(zip(train.class_ids, train.image_counts())))
    assert {c["frequency"] for c in gt.dataset["categories"]} <= {"r", "c", "f"}
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in val.data["annotations"] if not a["iscrowd"]]
    assert lvis_ap(gt, perfect)["AP"] == 100.0
    ids = train.class_ids
    shifted = [dict(d, category_id=ids[(ids.index(d["category_id"]) + 1) % 6]) for d in perfect]
    assert lvis_ap(gt, shifted)["AP"] < 100.0  # other categories count as false positives


def test_training_sees_what_the_runtime_sees(coco: str) -> None:
    """The training item is the runtime's tensor for that file (same decoder, same fitted resize), its boxes are
    the annotation through the same geometry, and the detector itself resizes nothing."""
    cfg = PreprocessConfig.fit(40, 56)  # real resizing: 64x64 becomes 40x40, 64x48 53x40, 64x32 56x28
    train = LVISDataset(resolve_det_source(coco), "train", cfg)
    for i in range(4):
        x, target = train[i]
        rgb = read_image(train.image_paths()[i])
        assert torch.equal(x, torch.from_numpy(preprocess_image(rgb, cfg)))
        geo = cfg.geometry(*rgb.shape[:2])
        anns = [a for a in train.anns[train.images[i]["id"]] if not a.get("iscrowd")]
        xyxy = np.array([[x0, y0, x0 + w, y0 + h] for x0, y0, w, h in (a["bbox"] for a in anns)]).reshape(-1, 4)
        assert np.allclose(target["boxes"].numpy(), geo.boxes_to_model(xyxy), atol=1e-4)
        assert np.allclose(geo.boxes_to_image(target["boxes"].numpy()), xyxy, atol=1e-3)
    assert {tuple(train[i][0].shape[1:]) for i in range(4)} == {(40, 40), (40, 53), (53, 40), (28, 56)}
    net = LTDetector(body="mobilenet_v3_fpn", num_classes=6).net.eval()
    images, _ = net.transform([train[3][0]])
    assert images.image_sizes == [(28, 56)] and images.tensors.shape[-2:] == (32, 64)  # padded, not resized


def test_broken_downloads_fail_in_one_line(coco: str, tmp_path) -> None:
    broken = tmp_path / "coco"
    shutil.copytree(coco, broken)
    ann = broken / "annotations" / "instances_val2017.json"
    data = json.loads(ann.read_text())
    os.remove(broken / "val2017" / os.path.basename(data["images"][0]["file_name"]))
    with pytest.raises(DatasetError, match=r"1 of 6 images are not where the JSON says, e\.g\. .*val2017"):
        LVISDataset(resolve_det_source(str(broken)), "val")
    ann.write_text(json.dumps(dict(data, categories=[])))
    with pytest.raises(DatasetError, match="'categories' is empty"):
        LVISDataset(resolve_det_source(str(broken)), "val")
    ann.write_text(json.dumps({k: v for k, v in data.items() if k != "categories"}))
    with pytest.raises(DatasetError, match="no 'categories' list"):
        LVISDataset(resolve_det_source(str(broken)), "val")
    ann.write_text(json.dumps(dict(data, annotations=[dict(data["annotations"][0], category_id=999)])))
    with pytest.raises(DatasetError, match="category_id 999, which is not among the categories"):
        LVISDataset(resolve_det_source(str(broken)), "val")
    with pytest.raises(DatasetError, match="no detection annotations found"):
        resolve_det_source(str(tmp_path))
    r = train_main(["stage1", "--data", str(broken), "--out", str(tmp_path / "x.pt"), "--epochs", "1"])
    assert r == 2 and not (tmp_path / "x.pt").exists()


def test_ade20k_as_downloaded(ade: str) -> None:
    assert sorted(os.listdir(ade)) == ["annotations", "dataset.json", "images", "objectInfo150.csv"]
    train = read_seg_split(ade, "train")
    assert train.reduce_zero_label and train.class_ids == list(range(1, 9))
    assert train.class_names[:3] == ["sky", "ground", "wall"] and train.class_names[3] == "circle-red"
    raw = cv2.imread(train.labels[1], cv2.IMREAD_UNCHANGED)
    lab = train.read_labels(1)
    assert raw.shape != (64, 64)  # sizes vary, as ADE20K's do
    assert (lab[raw == 0] == IGNORE).all() and (lab[raw > 0] == raw[raw > 0] - 1).all()
    assert len(pixel_counts(train)) == 8 and min(pixel_counts(train)) >= 0


def test_ade20k_devkit_table_and_label_range(ade: str, tmp_path) -> None:
    """The devkit's objectInfo150.txt (tab-separated) names the classes too; a label above the class count is
    one clear error."""
    root = tmp_path / "ADEChallengeData2016"
    shutil.copytree(ade, root)
    os.remove(root / "objectInfo150.csv")
    (root / "objectInfo150.txt").write_text("Idx\tRatio\tTrain\tVal\tName\n" + "".join(
        f"{i}\t0.1\t1\t1\t{n}, synonym\n" for i, n in enumerate(
            ["wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed "], 1)))
    assert ade20k_class_names(str(root / "objectInfo150.txt"))[-1] == "bed"
    split = read_seg_split(str(root), "val")
    assert split.class_names[0] == "wall"
    bad = cv2.imread(split.labels[0], cv2.IMREAD_UNCHANGED)
    bad[0, 0] = 9
    cv2.imwrite(split.labels[0], bad)
    with pytest.raises(DatasetError, match="label 9, but the dataset has 8 classes"):
        pixel_counts(split)
    os.remove(root / "objectInfo150.txt")
    with pytest.raises(DatasetError, match="no class names"):
        read_seg_split(str(root), "val")
