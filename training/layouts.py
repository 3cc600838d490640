"""det-lt and seg-lt rewritten in the layouts the real datasets are downloaded in, so that every loader can be
exercised on a few images exactly as a user's disk holds them.

- LVIS v1: `lvis_v1_{train,val}.json` beside COCO's `train2017/` and `val2017/` (JPEG, 12-digit names);
  images carry `coco_url` and no `file_name`, and the val split draws from both folders, as LVIS's does.
- COCO: `annotations/instances_{train,val}2017.json` beside `train2017/`, `val2017/`; COCO's sparse
  category ids, no LVIS fields, and one crowd region (`iscrowd` 1, uncompressed RLE) per split.
- ADE20K: `images/{training,validation}/ADE_*.jpg`, `annotations/{training,validation}/ADE_*.png` with
  0 = "other" and 1..K the classes, and `objectInfo150.csv` (Idx, Ratio, Train, Val, Name: pixel ratio,
  images per split, synonyms separated by commas); every other
  image is stretched to 4:3 so the sizes vary as ADE20K's do.
"""
from __future__ import annotations

import csv
import json
import os
import shutil

import cv2
import numpy as np

from ltdeploy.datasets.seg_folders import IGNORE
from training.detection.data import decode_mask

# COCO's 80 category ids (1..90 with gaps)
COCO_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31,
            32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58,
            59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89,
            90)
COCO_URL = "http://images.cocodataset.org/{folder}/{name}"


def coco_ids(count: int) -> list[int]:
    """`count` of COCO's category ids spread over its whole range, so that even a few categories have gaps."""
    last = len(COCO_IDS) - 1
    return [COCO_IDS[round(i * last / max(1, count - 1))] for i in range(count)]


def _read_split(src: str, split: str) -> dict:
    with open(os.path.join(src, "annotations", f"{split}.json"), encoding="utf-8") as f:
        return json.load(f)


def _write_jpeg(bgr: np.ndarray, dst: str) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if not cv2.imwrite(dst, bgr, [cv2.IMWRITE_JPEG_QUALITY, 95]):
        raise OSError(f"could not write {dst}")


def _coco_images(src: str, split: str, root: str, data: dict, first_id: int,
                 folder_of) -> tuple[list[dict], dict[int, int]]:
    """Copy a det-lt split's images as COCO JPEGs; returns the new image entries and old id → new id."""
    images, new_id = [], {}
    for k, im in enumerate(data["images"]):
        image_id = first_id + k
        folder, name = folder_of(k), f"{image_id:012d}.jpg"
        _write_jpeg(cv2.imread(os.path.join(src, "images", split, im["file_name"]), cv2.IMREAD_COLOR),
                    os.path.join(root, folder, name))
        new_id[im["id"]] = image_id
        images.append({"id": image_id, "width": im["width"], "height": im["height"], "license": 1,
                       "coco_url": COCO_URL.format(folder=folder, name=name), "date_captured": "2013-11-14 16:28:13",
                       "flickr_url": f"http://farm1.staticflickr.com/{image_id}.jpg", "_folder": folder, "_name": name,
                       "_source": im})
    return images, new_id


def write_lvis_layout(src: str, root: str) -> None:
    """det-lt at `src` as an LVIS v1 download at `root` (every third val image lives in train2017/)."""
    shutil.rmtree(root, ignore_errors=True)
    for split, first in (("train", 100001), ("val", 500001)):
        data = _read_split(src, split)
        images, new_id = _coco_images(src, split, root, data, first,
                                      lambda k, s=split: "train2017" if s == "train" or k % 3 == 2 else "val2017")
        out_images = [{k: v for k, v in im.items() if not k.startswith("_")} | {
            "neg_category_ids": im["_source"]["neg_category_ids"],
            "not_exhaustive_category_ids": im["_source"]["not_exhaustive_category_ids"]} for im in images]
        anns = [{"id": a["id"], "image_id": new_id[a["image_id"]], "category_id": a["category_id"],
                 "segmentation": a["segmentation"], "area": a["area"], "bbox": a["bbox"]} for a in data["annotations"]]
        cats = [{"id": c["id"], "name": c["name"], "synset": c["synset"], "synonyms": [c["name"]],
                 "def": f"a synthetic {c['name'].replace('-', ' ')}", "instance_count": c["instance_count"],
                 "image_count": c["image_count"], "frequency": c["frequency"]} for c in data["categories"]]
        with open(os.path.join(root, f"lvis_v1_{split}.json"), "w", encoding="utf-8") as f:
            json.dump({"info": {"description": "det-lt as LVIS v1"}, "licenses": [{"id": 1, "name": "synthetic"}],
                       "images": out_images, "annotations": anns, "categories": cats}, f)


def _crowd(image: dict, anns: list[dict]) -> dict | None:
    """A crowd region (uncompressed RLE) over the free top-left corner of an image, if there is one."""
    h, w = image["height"], image["width"]
    mask = np.zeros((h, w), np.uint8)
    mask[:h // 4, :w // 4] = 1
    if any(decode_mask(a["segmentation"], h, w)[:h // 4, :w // 4].any() for a in anns) or mask.sum() < 4:
        return None
    flat = mask.ravel(order="F")
    runs = np.diff(np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])).tolist()
    return {"segmentation": {"size": [h, w], "counts": runs}, "bbox": [0, 0, w // 4, h // 4],
            "area": int(mask.sum()), "iscrowd": 1}


def write_coco_layout(src: str, root: str) -> None:
    """det-lt at `src` as a COCO 2017 download at `root`, with COCO's sparse category ids."""
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.join(root, "annotations"))
    for split, first in (("train", 100001), ("val", 500001)):
        data = _read_split(src, split)
        if len(data["categories"]) > len(COCO_IDS):
            raise ValueError(f"the COCO layout holds at most {len(COCO_IDS)} categories")
        cats_in_order = sorted(data["categories"], key=lambda c: c["id"])
        cat_id = {c["id"]: cid for c, cid in zip(cats_in_order, coco_ids(len(cats_in_order)))}
        images, new_id = _coco_images(src, split, root, data, first, lambda k, s=split: f"{s}2017")
        anns = [{"id": a["id"], "image_id": new_id[a["image_id"]], "category_id": cat_id[a["category_id"]],
                 "segmentation": a["segmentation"], "area": a["area"], "bbox": a["bbox"], "iscrowd": 0}
                for a in data["annotations"]]
        for im in images:
            crowd = _crowd(im, [a for a in data["annotations"] if a["image_id"] == im["_source"]["id"]])
            if crowd is not None:
                cat = anns[0]["category_id"] if anns else COCO_IDS[0]
                anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": cat, **crowd})
                break
        out_images = [{"id": im["id"], "file_name": im["_name"], "width": im["width"], "height": im["height"],
                       "license": 1, "coco_url": im["coco_url"], "date_captured": im["date_captured"],
                       "flickr_url": im["flickr_url"]} for im in images]
        cats = [{"id": cat_id[c["id"]], "name": c["name"], "supercategory": "shape"} for c in data["categories"]]
        with open(os.path.join(root, "annotations", f"instances_{split}2017.json"), "w", encoding="utf-8") as f:
            json.dump({"info": {"description": "det-lt as COCO 2017"}, "licenses": [{"id": 1, "name": "synthetic"}],
                       "images": out_images, "annotations": anns, "categories": cats}, f)


def write_ade20k_layout(src: str, root: str) -> None:
    """seg-lt at `src` as ADEChallengeData2016 at `root`: labels shifted by one (0 = other, seg-lt's ignore)."""
    shutil.rmtree(root, ignore_errors=True)
    with open(os.path.join(src, "classes.txt"), encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    pixels = np.zeros(len(names), np.int64)
    images = {"train": np.zeros(len(names), np.int64), "val": np.zeros(len(names), np.int64)}
    for split, folder, prefix in (("train", "training", "ADE_train"), ("val", "validation", "ADE_val")):
        for sub in ("images", "annotations"):
            os.makedirs(os.path.join(root, sub, folder))
        for k, name in enumerate(sorted(os.listdir(os.path.join(src, "images", split)))):
            img = cv2.imread(os.path.join(src, "images", split, name), cv2.IMREAD_COLOR)
            lab = cv2.imread(os.path.join(src, "annotations", split, name), cv2.IMREAD_UNCHANGED)
            if k % 2:  # 4:3 landscape, as most ADE20K photos
                h = img.shape[0]
                img = cv2.resize(img, (h * 4 // 3, h), interpolation=cv2.INTER_LINEAR)
                lab = cv2.resize(lab, (h * 4 // 3, h), interpolation=cv2.INTER_NEAREST)
            ade = np.where(lab == IGNORE, 0, lab.astype(np.int32) + 1).astype(np.uint8)
            counts = np.bincount(ade.ravel(), minlength=len(names) + 1)[1:]
            images[split] += counts > 0
            if split == "train":
                pixels += counts
            stem = f"{prefix}_{k + 1:08d}"
            _write_jpeg(img, os.path.join(root, "images", folder, f"{stem}.jpg"))
            if not cv2.imwrite(os.path.join(root, "annotations", folder, f"{stem}.png"), ade):
                raise OSError(f"could not write annotations/{folder}/{stem}.png")
    ratio = pixels / max(1, pixels.sum())
    with open(os.path.join(root, "objectInfo150.csv"), "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Idx", "Ratio", "Train", "Val", "Name"])
        for i, n in enumerate(names):
            writer.writerow([i + 1, f"{ratio[i]:.4f}", int(images["train"][i]), int(images["val"][i]),
                             f"{n}, {n.replace('-', ' ')}" if "-" in n else n])
