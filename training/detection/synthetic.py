"""det-lt: synthetic long-tailed detection / instance segmentation scenes in the LVIS v1 JSON format.

Category r (by rank, Latin-square shape-colour names as in seg-lt) is placed in
n_r = n_max * n_max^(-r / (K - 1)) training images (n_max 250), so the recorded image counts span LVIS's
rare (1-10 images), common (11-100) and frequent (> 100) groups. Images come in four shapes with the long
side at `size`: square, landscape 4:3, portrait 3:4 and wide 2:1, in turn. Objects do not overlap, so every mask is
whole. Masks are polygons, except rings (which have a hole): compressed RLE, as LVIS and COCO allow.
Every category is labelled exhaustively, so each image's `neg_category_ids` lists all the categories it
lacks and `not_exhaustive_category_ids` is empty. The val split draws categories uniformly, so rare
categories appear there too.
"""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
from faster_coco_eval.core import mask as mask_utils
from tqdm import tqdm

from ltdeploy.datasets.det_sources import lvis_frequency
from training.detection.data import decode_mask
from training.segmentation.synthetic import latin_objects
from training.shapes import COLOURS, shape_mask

# (height, width) as fractions of the long side, used in turn
ASPECTS = ((1.0, 1.0), (0.75, 1.0), (1.0, 0.75), (0.5, 1.0))


def image_shape(index: int, size: int) -> tuple[int, int]:
    """The (height, width) of image `index`: the shapes of ASPECTS in turn, long side `size`."""
    fh, fw = ASPECTS[index % len(ASPECTS)]
    return round(size * fh), round(size * fw)


def image_counts(num_classes: int, n_max: int) -> np.ndarray:
    """Training images per category by rank: a power law from n_max down to 1."""
    r = np.arange(num_classes) / max(1, num_classes - 1)
    return np.maximum(1, np.round(n_max * float(n_max) ** -r)).astype(int)


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    top, bottom = rng.uniform(60, 200, (2, 3))
    ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = top * (1 - ramp) + bottom * ramp + np.zeros((h, w, 3), np.float32)
    return img + rng.normal(0, 10, img.shape).astype(np.float32)


def _segmentation(mask: np.ndarray, shape: str) -> list | dict:
    """COCO segmentation of a binary mask: polygons, or compressed RLE for shapes with holes."""
    if shape == "ring":
        rle = mask_utils.encode(np.asfortranarray(mask))
        return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")
                if isinstance(rle["counts"], bytes) else rle["counts"]}
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def _place(h: int, w: int, obj: int, taken: list[tuple[int, int, int, int]],
           rng: np.random.Generator) -> tuple[int, int] | None:
    """A top-left corner whose box (with a 2-px margin) overlaps no placed box, or None."""
    for _ in range(30):
        x, y = int(rng.integers(0, w - obj + 1)), int(rng.integers(0, h - obj + 1))
        if all(x + obj + 2 <= a or a + c + 2 <= x or y + obj + 2 <= b or b + d + 2 <= y for a, b, c, d in taken):
            return x, y
    return None


def render_scene(shape_hw: tuple[int, int], cats: list[int], names: list[str], rng: np.random.Generator,
                 min_obj: int, max_obj: int) -> tuple[np.ndarray, list[dict]]:
    """One RGB uint8 scene of (height, width) and its instances (category index, bbox xywh, area, segmentation)."""
    h, w = shape_hw
    img = _background(h, w, rng)
    taken, instances = [], []
    top = min(max_obj, min(h, w) - 4)
    for c in cats:
        shape, colour = names[c].split("-")
        obj = int(rng.integers(min(min_obj, top), top + 1))
        corner = _place(h, w, obj, taken, rng)
        if corner is None:
            continue
        x, y = corner
        soft = shape_mask(shape, obj, rng)
        hue = (COLOURS[colour] + rng.normal(0, 4)) % 180
        fg = cv2.cvtColor(np.uint8([[[hue, rng.uniform(170, 255), rng.uniform(170, 255)]]]),
                          cv2.COLOR_HSV2RGB).astype(np.float32)[0, 0]
        region = img[y:y + obj, x:x + obj]
        img[y:y + obj, x:x + obj] = soft[..., None] * fg + (1 - soft[..., None]) * region
        mask = np.zeros((h, w), np.uint8)
        mask[y:y + obj, x:x + obj] = soft >= 0.5
        segmentation = _segmentation(mask, shape)
        if not segmentation:
            continue
        # box and area from the mask as the annotation encodes it (a polygon through the boundary pixels'
        # centres covers a little less than the pixel mask), so that ground truth is self-consistent
        ys, xs = np.nonzero(decode_mask(segmentation, h, w))
        if len(xs) < 4:
            continue
        taken.append((x, y, obj, obj))
        x0, y0 = int(xs.min()), int(ys.min())
        instances.append({"category": c, "bbox": [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0],
                          "area": len(xs), "segmentation": segmentation})
    return np.clip(img + rng.normal(0, 5, img.shape), 0, 255).round().astype(np.uint8), instances


def _split_plan(split: str, n_images: int, counts: np.ndarray, rng: np.random.Generator) -> list[list[int]]:
    """Categories to draw per image: train from the per-category image counts, rarest first (an object that
    finds no room is left out, and a frequent one can spare an image where a rare one cannot), val uniform
    (3-5 each)."""
    plan: list[list[int]] = [[] for _ in range(n_images)]
    if split == "train":
        for c, n in enumerate(counts):
            for i in rng.choice(n_images, size=min(int(n), n_images), replace=False):
                plan[i].append(c)
        return [sorted(p, reverse=True) for p in plan]  # categories are in rank order: the last is the rarest
    for i in range(n_images):
        plan[i] = [int(c) for c in rng.choice(len(counts), size=int(rng.integers(3, 6)), replace=False)]
    return [[int(c) for c in rng.permutation(p)] for p in plan]


def make_det_lt(root: str, num_classes: int = 50, n_train: int = 600, n_val: int = 150, size: int = 128,
                n_max: int = 250, seed: int = 0, min_obj: int = 18, max_obj: int = 36) -> dict:
    """Write images/{train,val}/*.png and annotations/{train,val}.json (LVIS v1 fields)."""
    rng = np.random.default_rng(seed)
    names = latin_objects(num_classes)
    counts = image_counts(num_classes, n_max)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    records = {}
    with tqdm(total=n_train + n_val, desc="det-lt", unit="img", leave=False) as bar:
        for split, n in (("train", n_train), ("val", n_val)):
            os.makedirs(os.path.join(root, "images", split), exist_ok=True)
            images, annotations = [], []
            for i, cats in enumerate(_split_plan(split, n, counts, rng)):
                h, w = image_shape(i, size)
                img, instances = render_scene((h, w), cats, names, rng, min_obj, max_obj)
                name = f"{i:06d}.png"
                if not cv2.imwrite(os.path.join(root, "images", split, name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
                    raise OSError(f"could not write images/{split}/{name}")
                present = {inst["category"] + 1 for inst in instances}
                images.append({"id": i + 1, "file_name": name, "height": h, "width": w,
                               "neg_category_ids": [c for c in range(1, num_classes + 1) if c not in present],
                               "not_exhaustive_category_ids": []})
                for inst in instances:
                    annotations.append({"id": len(annotations) + 1, "image_id": i + 1,
                                        "category_id": inst["category"] + 1, "bbox": inst["bbox"],
                                        "area": inst["area"], "segmentation": inst["segmentation"], "iscrowd": 0})
                bar.update()
            records[split] = (images, annotations)
    train_images, train_anns = records["train"]
    img_count = np.zeros(num_classes, int)
    inst_count = np.zeros(num_classes, int)
    for c in {(a["image_id"], a["category_id"]) for a in train_anns}:
        img_count[c[1] - 1] += 1
    for a in train_anns:
        inst_count[a["category_id"] - 1] += 1
    categories = [{"id": c + 1, "name": names[c], "synset": names[c], "frequency": lvis_frequency(int(img_count[c])),
                   "image_count": int(img_count[c]), "instance_count": int(inst_count[c])}
                  for c in range(num_classes)]
    for split, (images, annotations) in records.items():
        with open(os.path.join(root, "annotations", f"{split}.json"), "w", encoding="utf-8") as f:
            json.dump({"info": {"description": "det-lt (synthetic, LVIS v1 format)"}, "images": images,
                       "annotations": annotations, "categories": categories}, f)
    groups = [cat["frequency"] for cat in categories]
    return {"classes": num_classes, "train_images": n_train, "val_images": n_val, "size": size,
            "groups": {g: groups.count(g) for g in "rcf"},
            "image_count": {names[c]: int(img_count[c]) for c in range(num_classes)},
            "val_instances": len(records["val"][1]), "train_instances": len(train_anns)}
