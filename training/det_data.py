"""LVIS / COCO JSON detection data: images with boxes, labels and masks, and the repeat-factor sampler."""
from __future__ import annotations

import json
import math
import os

import cv2
import numpy as np
import torch
from faster_coco_eval.core import mask as mask_utils
from torch.utils.data import Dataset, Sampler

def is_det_dataset(root: str) -> bool:
    """True for the det-lt layout: annotations/train.json beside images/train/."""
    return os.path.isfile(os.path.join(root, "annotations", "train.json"))


def annotation_file(root: str, split: str) -> str:
    """The JSON file of one split."""
    return os.path.join(root, "annotations", f"{split}.json")


def decode_mask(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygons, RLE or compressed RLE) as a (height, width) uint8 mask."""
    if isinstance(segmentation, list):
        rles = mask_utils.frPyObjects(segmentation, height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return np.ascontiguousarray(mask_utils.decode(rle), dtype=np.uint8)


class LVISDataset(Dataset):
    """One split of an LVIS / COCO JSON set. Labels are 1..K in category-id order (0 is background)."""

    def __init__(self, root: str, split: str, masks: bool = False) -> None:
        with open(annotation_file(root, split), encoding="utf-8") as f:
            data = json.load(f)
        self.root, self.split, self.masks = root, split, masks
        self.categories = sorted(data["categories"], key=lambda c: c["id"])
        self.label_of = {c["id"]: i + 1 for i, c in enumerate(self.categories)}
        self.images = sorted(data["images"], key=lambda im: im["id"])
        self.anns: dict[int, list[dict]] = {im["id"]: [] for im in self.images}
        for a in data["annotations"]:
            self.anns[a["image_id"]].append(a)

    @property
    def class_names(self) -> list[str]:
        """Category names in label order."""
        return [c["name"] for c in self.categories]

    def image_counts(self) -> list[int]:
        """Images per category in this split (what LVIS calls image_count for the train split)."""
        counts = np.zeros(len(self.categories), int)
        for anns in self.anns.values():
            for label in {self.label_of[a["category_id"]] for a in anns}:
                counts[label - 1] += 1
        return counts.tolist()

    def instance_counts(self) -> list[int]:
        """Instances per category in this split."""
        counts = np.zeros(len(self.categories), int)
        for anns in self.anns.values():
            for a in anns:
                counts[self.label_of[a["category_id"]] - 1] += 1
        return counts.tolist()

    def labels_of(self, index: int) -> set[int]:
        """The labels present in one image."""
        return {self.label_of[a["category_id"]] for a in self.anns[self.images[index]["id"]]}

    def __len__(self) -> int:
        return len(self.images)

    def image_paths(self) -> list[str]:
        """Image files in index order."""
        return [os.path.join(self.root, "images", self.split, im["file_name"]) for im in self.images]

    def read_image(self, index: int) -> np.ndarray:
        """The RGB uint8 image."""
        path = os.path.join(self.root, "images", self.split, self.images[index]["file_name"])
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise OSError(f"cannot read {path}")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        """(3, H, W) float image in 0..1 and the torchvision target (boxes xyxy, labels, masks, image_id)."""
        info = self.images[index]
        img = self.read_image(index)
        anns = [a for a in self.anns[info["id"]] if not a.get("iscrowd", 0)]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)],
                             dtype=torch.float32).reshape(-1, 4)
        target = {"boxes": boxes, "image_id": info["id"],
                  "labels": torch.tensor([self.label_of[a["category_id"]] for a in anns], dtype=torch.int64)}
        if self.masks:
            h, w = img.shape[:2]
            target["masks"] = torch.from_numpy(np.stack([decode_mask(a["segmentation"], h, w) for a in anns])
                                               if anns else np.zeros((0, h, w), np.uint8))
        return torch.from_numpy(img).permute(2, 0, 1).float().div(255), target


def hflip(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    """Flip an image and its boxes and masks left to right."""
    w = image.shape[-1]
    target = dict(target)
    b = target["boxes"].clone()
    b[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
    target["boxes"] = b
    if "masks" in target:
        target["masks"] = target["masks"].flip(-1)
    return image.flip(-1), target


def repeat_factors(dataset: LVISDataset, threshold: float) -> list[float]:
    """LVIS repeat factors: r_c = max(1, sqrt(t / f_c)), f_c the fraction of images holding c; per image
    the max over its categories (1 for images without annotations)."""
    freq = np.asarray(dataset.image_counts(), np.float64) / len(dataset)
    r_cat = np.maximum(1.0, np.sqrt(threshold / np.maximum(freq, 1e-12)))
    return [max((float(r_cat[c - 1]) for c in dataset.labels_of(i)), default=1.0) for i in range(len(dataset))]


class RepeatFactorSampler(Sampler[int]):
    """Each epoch, image i appears floor(r_i) times plus once more with probability frac(r_i), shuffled
    (stochastic rounding, as in Detectron2). `rank` / `world` split the epoch across processes."""

    def __init__(self, factors: list[float], seed: int = 0, rank: int = 0, world: int = 1) -> None:
        self.factors = np.asarray(factors, np.float64)
        self.seed, self.rank, self.world, self.epoch = seed, rank, world, 0

    def set_epoch(self, epoch: int) -> None:
        """Draw a different epoch."""
        self.epoch = epoch

    def _indices(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed + self.epoch)
        whole = np.floor(self.factors)
        reps = whole + (rng.random(len(self.factors)) < self.factors - whole)
        idx = rng.permutation(np.repeat(np.arange(len(self.factors)), reps.astype(int)))
        size = math.ceil(len(idx) / self.world)
        idx = np.concatenate([idx, idx[:size * self.world - len(idx)]])  # equal shares across ranks
        return idx[self.rank::self.world]

    def __iter__(self):
        return iter(self._indices().tolist())

    def __len__(self) -> int:
        return len(self._indices())


def collate(batch: list) -> tuple[list[torch.Tensor], list[dict]]:
    """Detection batches are lists: images differ in size and targets in length."""
    images, targets = zip(*batch)
    return list(images), list(targets)
