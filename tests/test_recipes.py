"""Recipes: every preset parses and builds its transforms; the command line overrides a recipe, which overrides
the task's defaults; a setting the task does not read is refused; v2 augmentation keeps boxes on their masks."""
from __future__ import annotations

import pytest
import torch
from torchvision.ops import masks_to_boxes

from tests.conftest import train_here
from training.config import Stage1Config, Stage2Config
from training.core.transforms import augment_detection, augment_segmentation, build_transforms
from training.recipes import load_recipe, recipe_names
from training.tasks import find_task
from training.train import _settings, build_parser


def test_every_recipe_parses_and_builds_its_transforms():
    names = recipe_names()
    assert {"imagenet-lt-x50", "lvis-v1-mask-rcnn-r50-1x", "ade20k-deeplabv3-r50"} <= set(names)
    for name in names:
        recipe = load_recipe(name)
        s1, s2 = recipe.settings("stage1"), recipe.settings("stage2")
        Stage1Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in s1.items()})
        Stage2Config(**s2)
        pipeline = build_transforms(s1.get("transforms", ()), label_fill=255)
        assert pipeline is not None and len(pipeline.transforms) == len(s1["transforms"]), name
        assert s1["epochs"] > 1 and s2["epochs"] >= 1 and s1["batch_size"] >= 1


def test_recipe_list_prints_one_a_line(capsys):
    r = train_here(capsys, "stage1", "--recipe", "list")
    assert r.returncode == 0
    lines = r.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == recipe_names()


def test_command_line_over_recipe_over_task_default(digits):
    task = find_task(str(digits))
    args = build_parser().parse_args(["stage1", "--data", str(digits), "--out", "x.pt", "--recipe",
                                      "imagenet-lt-x50", "--epochs", "3", "--seed", "5"])
    cfg = _settings(args, task)
    assert (cfg.epochs, cfg.seed) == (3, 5)  # given
    assert (cfg.batch_size, cfg.backbone, cfg.input_size) == (32, "tv:resnext50_32x4d", 224)  # the recipe's
    assert cfg.transforms[0]["name"] == "RandomResizedCrop" and cfg.shift == 2  # the config's own default
    plain = _settings(build_parser().parse_args(["stage1", "--data", str(digits), "--out", "x.pt"]), task)
    assert (plain.batch_size, plain.epochs, plain.backbone) == (task.defaults.batch_size,
                                                                task.defaults.stage1_epochs, task.models[0])
    s2 = _settings(build_parser().parse_args(["stage2", "--data", str(digits), "--out", "x.pt", "--checkpoint",
                                              "s1.pt", "--recipe", "imagenet-lt-x50", "--rho", "1.0"]), task)
    assert (s2.epochs, s2.rho, s2.augment) == (10, 1.0, True)


@pytest.mark.parametrize("flags, says", [
    (["--warmup", "5"], "classification stage1 does not use --warmup"),
    (["--rfs", "0.001", "--clip", "1"], "classification stage1 does not use --rfs, --clip"),
    (["--recipe", "lvis-v1-mask-rcnn-r50-1x"], "trains detection"),
    (["--recipe", "imagenet-lt-x51"], "no such recipe"),
])
def test_settings_a_task_does_not_read_are_refused_in_one_line(digits, tmp_path, flags, says, capsys):
    r = train_here(capsys, "stage1", "--data", str(digits), "--out", str(tmp_path / "x.pt"), *flags)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error")]
    assert r.returncode == 2 and len(errors) == 1 and says in errors[0], r.stderr
    assert not (tmp_path / "x.pt").exists()


def test_stage_one_settings_are_refused_by_stage_two_and_detection(models, digits, tmp_path, capsys):
    from tests.test_det_pipeline import make_det_replica

    r = train_here(capsys, "stage2", "--checkpoint", str(models["stage1"]), "--data", str(digits), "--out",
                   str(tmp_path / "s2.pt"), "--resume", str(models["stage1"]))
    assert r.returncode == 2 and "classification stage2 does not use --resume" in r.stderr, r.stderr
    det = make_det_replica(tmp_path, "lvis", classes=6, train=6, val=2)
    r = train_here(capsys, "stage1", "--data", det, "--out", str(tmp_path / "d.pt"), "--save-every", "1",
                   "--shift", "3")
    assert r.returncode == 2 and "detection stage1 does not use --shift (" in r.stderr, r.stderr
    assert not (tmp_path / "s2.pt").exists() and not (tmp_path / "d.pt").exists()


def test_v2_augmented_detection_boxes_still_enclose_their_masks(tmp_path):
    from ltdeploy.datasets.det_sources import resolve_det_source
    from tests.test_det_pipeline import make_det_replica
    from training.detection.data import LVISDataset
    from training.detection.train import det_preprocess
    from training.train import build_parser as parser

    data = make_det_replica(tmp_path, "lvis", classes=6, train=6, val=2)
    args = parser().parse_args(["stage1", "--data", data, "--out", "x.pt", "--input-size", "64"])
    cfg = _settings(args, find_task(data))
    dataset = LVISDataset(resolve_det_source(data), "train", det_preprocess(cfg), masks=True)
    specs = load_recipe("lvis-v1-mask-rcnn-r50-1x").settings("stage1")["transforms"]
    torch.manual_seed(0)
    pipeline, checked = build_transforms(specs), 0
    for i in range(len(dataset)):
        image, target = dataset[i]
        out_image, out = augment_detection(pipeline, image, target)
        assert min(out_image.shape[-2:]) in (640, 672, 704, 736, 768, 800) or max(out_image.shape[-2:]) == 1333
        assert len(out["boxes"]) == len(out["labels"]) == len(out["masks"])
        present = out["masks"].flatten(1).bool().any(1)
        tight = masks_to_boxes(out["masks"][present]).float()
        boxes = out["boxes"][present]
        assert (tight[:, :2] >= boxes[:, :2] - 1).all() and (tight[:, 2:] <= boxes[:, 2:] + 1).all()
        checked += int(present.sum())
    assert checked >= 6


def test_v2_augmented_segmentation_pads_labels_with_ignore():
    image = torch.zeros(3, 40, 60, dtype=torch.uint8)
    labels = torch.ones(40, 60, dtype=torch.int64)
    pipeline = build_transforms([{"name": "RandomCrop", "size": 64, "pad_if_needed": True}], label_fill=255)
    out_image, out_labels = augment_segmentation(pipeline, image, labels)
    assert out_image.shape[-2:] == out_labels.shape == (64, 64)
    assert set(out_labels.unique().tolist()) == {1, 255}


RECIPE = """task = "{task}"
description = "a test recipe"
source = "tests/test_recipes.py"

[stage1]
epochs = 1
batch_size = 8
workers = 1
{extra}
[[stage1.transforms]]
name = "{resize}"
{resize_args}

[[stage1.transforms]]
name = "RandomHorizontalFlip"

[[stage1.transforms]]
name = "ColorJitter"
brightness = 0.4
"""


def test_recipe_transforms_train_classification_and_segmentation(digits, tmp_path, capsys):
    from training.segmentation.synthetic import make_seg_lt

    seg = tmp_path / "seg-lt"
    make_seg_lt(str(seg), num_classes=6, n_train=8, n_val=4, imbalance=4)
    cases = {"classification": (digits, "RandomResizedCrop", "size = 32\nscale = [0.5, 1.0]"),
             "segmentation": (seg, "RandomCrop", "size = 64\npad_if_needed = true")}
    for task, (data, resize, args) in cases.items():
        recipe = tmp_path / f"{task}.toml"
        recipe.write_text(RECIPE.format(task=task, extra="input_size = 64\n" if task == "segmentation" else "",
                                        resize=resize, resize_args=args))
        out = tmp_path / f"{task}.pt"
        r = train_here(capsys, "stage1", "--data", str(data), "--recipe", str(recipe), "--out", str(out))
        assert r.returncode == 0, r.stderr[-2000:]
        payload = torch.load(out, map_location="cpu", weights_only=True)
        record = payload["history"]["args"]
        assert record["transforms"][0]["name"] == resize and record["recipe"] == str(recipe)
        assert payload["history"]["stage1"]["bad_images"] == 0


def test_transforms_that_miss_the_input_size_are_one_line(digits, tmp_path, capsys):
    recipe = tmp_path / "wrong.toml"
    recipe.write_text(RECIPE.format(task="classification", extra="", resize="RandomResizedCrop", resize_args="size = 24"))
    r = train_here(capsys, "stage1", "--data", str(digits), "--recipe", str(recipe), "--out", str(tmp_path / "x.pt"),
                   "--workers", "2")
    errors = [line for line in r.stderr.splitlines() if line.startswith("error")]
    assert r.returncode == 2 and len(errors) == 1 and "(24, 24)" in errors[0] and "Traceback" not in r.stderr
