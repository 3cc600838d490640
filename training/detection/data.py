"""LVIS / COCO JSON detection data: images with boxes, labels and masks, and the repeat-factor sampler."""
from __future__ import annotations

import math
import os

import numpy as np
import torch
from faster_coco_eval.core import mask as mask_utils
from torch.utils.data import Dataset, Sampler

from ltdeploy.datasets.det_sources import DetSource
from ltdeploy.errors import DatasetError, ImageError
from ltdeploy.image_io import read_image
from ltdeploy.preprocess import PreprocessConfig, preprocess_image
from training.core.bad_images import BadImage


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
    """One split of an LVIS / COCO JSON set. Labels are 1..K in category-id order (0 is background).

    Items are what the model trains on: the image through the model's own preprocessing (`preprocess`,
    decoded by ltdeploy.image_io as the runtime decodes it) and the targets mapped onto it with the same
    geometry; `orig_size` keeps the image's (H, W) for the way back.
    """

    def __init__(self, source: DetSource, split: str, preprocess: PreprocessConfig | None = None,
                 masks: bool = False, skip_bad: bool = False) -> None:
        data = source.load(split)
        self.data = data  # the split's JSON as read (the evaluator's ground truth)
        self.source, self.split, self.masks, self.preprocess = source, split, masks, preprocess
        self.skip_bad = skip_bad  # training: an unreadable image gives a BadImage (skipped and counted)
        self.categories = sorted(data["categories"], key=lambda c: c["id"])
        self.label_of = {c["id"]: i + 1 for i, c in enumerate(self.categories)}
        self.images = sorted(data["images"], key=lambda im: im["id"])
        self.anns: dict[int, list[dict]] = {im["id"]: [] for im in self.images}
        for a in data["annotations"]:
            self.anns[a["image_id"]].append(a)
        self.paths = [source.image_path(split, im) for im in self.images]
        missing = [p for p in self.paths if not os.path.isfile(p)]
        if missing:
            raise DatasetError(f"{source.annotation_file(split)}: {len(missing)} of {len(self.paths)} images are not "
                               f"where the JSON says, e.g. {missing[0]}")

    @property
    def class_names(self) -> list[str]:
        """Category names in label order."""
        return [c["name"] for c in self.categories]

    @property
    def class_ids(self) -> list[int]:
        """The dataset's category ids in label order."""
        return [c["id"] for c in self.categories]

    def image_counts(self) -> list[int]:
        """Images per category in this split: LVIS's `image_count` where every category has one (LVIS counts
        it on the train split), else counted from the annotations."""
        if self.split == "train" and all("image_count" in c for c in self.categories):
            return [int(c["image_count"]) for c in self.categories]
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
        return list(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        """(3, h, w) preprocessed image and the torchvision target on it (boxes xyxy, labels, masks, image_id,
        orig_size)."""
        if self.preprocess is None:
            raise ValueError("LVISDataset needs the model's preprocessing to give images")
        info = self.images[index]
        try:
            rgb = read_image(self.paths[index])
        except ImageError as exc:
            if self.skip_bad:
                return BadImage(str(self.paths[index]), str(exc))
            raise DatasetError(str(exc)) from None
        h, w = rgb.shape[:2]
        geo = self.preprocess.geometry(h, w)
        anns = [a for a in self.anns[info["id"]] if not a.get("iscrowd", 0)]
        xywh = np.asarray([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
        boxes = geo.boxes_to_model(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1))
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # torchvision refuses empty boxes
        anns = [a for a, k in zip(anns, keep) if k]
        target = {"boxes": torch.from_numpy(boxes[keep]).float(), "image_id": info["id"], "orig_size": (h, w),
                  "labels": torch.tensor([self.label_of[a["category_id"]] for a in anns], dtype=torch.int64)}
        if self.masks:
            full = np.stack([decode_mask(a["segmentation"], h, w) for a in anns]) if anns else \
                np.zeros((0, h, w), np.uint8)
            target["masks"] = torch.from_numpy(geo.masks_to_model(full))
        return torch.from_numpy(preprocess_image(rgb, self.preprocess)), target


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


def aspect_groups(dataset: "LVISDataset") -> list[int]:
    """Each image's aspect-ratio group: 0 landscape or square, 1 portrait (detectron2's two groups)."""
    return [int(im.get("height", 0) > im.get("width", 0)) for im in dataset.images]  # no size: one group


class AspectRatioBatches(Sampler[list[int]]):
    """Batches of one aspect-ratio group each, so that padding a batch to its largest image wastes little
    (detectron2's AspectRatioGroupedDataset, torchvision's GroupedBatchSampler). Indices come in the order
    `sampler` draws them; what is left in the groups at the end goes out in mixed batches, so every rank makes
    ceil(len(sampler) / batch_size) batches, as many as the others."""

    def __init__(self, sampler: Sampler[int], groups: list[int], batch_size: int) -> None:
        self.sampler, self.groups, self.batch_size = sampler, groups, batch_size

    def __iter__(self):
        pending: dict[int, list[int]] = {}
        for index in self.sampler:
            group = pending.setdefault(self.groups[index], [])
            group.append(index)
            if len(group) == self.batch_size:
                yield group[:]
                group.clear()
        rest = [i for group in pending.values() for i in group]
        for start in range(0, len(rest), self.batch_size):
            yield rest[start:start + self.batch_size]

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)


def collate(batch: list) -> tuple[list[torch.Tensor], list[dict], list[BadImage]]:
    """Detection batches are lists: images differ in size and targets in length; unreadable samples
    (training) come apart as the third list."""
    good = [b for b in batch if not isinstance(b, BadImage)]
    return [b[0] for b in good], [b[1] for b in good], [b for b in batch if isinstance(b, BadImage)]
