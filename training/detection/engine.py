"""Detection training and inference loops: one CPU process or torchrun (gloo), RFS sampling, PCB switch,
COCO-results output and the validation confusion matrix."""
from __future__ import annotations

import math

import numpy as np
import torch
from faster_coco_eval.core import mask as mask_utils
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ltdeploy.detect import to_image
from training.config import TrainConfig
from training.core.bad_images import BadImage
from training.core.device import Placement, module_device
from training.core.distributed import init_distributed, reduce_sum
from training.core.engine import LoopParts, train_epochs
from training.core.transforms import AugmentedDetection, build_transforms
from training.detection.data import (
    AspectRatioBatches,
    LVISDataset,
    RepeatFactorSampler,
    aspect_groups,
    collate,
    hflip,
    repeat_factors,
)
from training.detection.model import LTDetector

WORKERS_FROM_IMAGES = 200  # smaller sets decode in the training process: starting workers costs more


class RandomFlip(Dataset):
    """Horizontal flips with probability 0.5, drawn from (seed, epoch, index): reproducible, and the same
    image gets the same flip on whichever rank draws it."""

    def __init__(self, dataset: LVISDataset, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[index]
        if isinstance(item, BadImage):
            return item
        image, target = item
        if np.random.default_rng((self.seed, self.epoch, index)).random() < 0.5:
            return hflip(image, target)
        return image, target


def make_det_loader(dataset: LVISDataset, cfg: TrainConfig, rank: int = 0,
                    world: int = 1) -> tuple[DataLoader, RepeatFactorSampler, RandomFlip | LVISDataset]:
    """Training loader: repeat-factor sampling (threshold --rfs; 0 = every image once) split across ranks,
    batches grouped by aspect ratio."""
    factors = repeat_factors(dataset, cfg.rfs) if cfg.rfs > 0 else [1.0] * len(dataset)
    sampler = RepeatFactorSampler(factors, seed=cfg.seed, rank=rank, world=world)
    transforms = build_transforms(cfg.transforms)
    # the recipe's augmentation replaces the built-in flip
    source = AugmentedDetection(dataset, transforms) if transforms is not None else \
        RandomFlip(dataset, cfg.seed) if cfg.hflip else dataset
    # workers restart each epoch (not persistent) so that they see the flip's new epoch
    batches = AspectRatioBatches(sampler, aspect_groups(dataset), cfg.batch_size)
    # its own generator: creating an epoch's iterator then draws from it, not from torch's global stream (which
    # the RPN's and RoI head's sampling use), so a resumed run draws what the uninterrupted one did
    workers = cfg.workers if len(dataset) >= WORKERS_FROM_IMAGES else 0
    loader = DataLoader(source, batch_sampler=batches, collate_fn=collate, num_workers=workers,
                        generator=torch.Generator().manual_seed(cfg.seed),
                        pin_memory=Placement.from_config(cfg).pin_memory)
    return loader, sampler, source


def warmup_cosine(opt: torch.optim.Optimizer, steps: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup` steps, then cosine to zero."""
    def factor(s: int) -> float:
        return min(1.0, (s + 1) / max(1, warmup)) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_detector(model: LTDetector, dataset: LVISDataset, cfg: TrainConfig, stage: str = "stage 1",
                   loss_keys: tuple[str, ...] | None = None) -> dict:
    """SGD with warm-up and clipping over `cfg.epochs` epochs on the shared engine (processes, resume, faults);
    PCB turns on from epoch `cfg.pcb_start` once every class was seen.

    `loss_keys` limits the optimised losses (stage 2: the classification loss only). Returns the
    per-iteration total loss (the mean over ranks) and per-epoch means of each loss.
    """
    joined = init_distributed()
    loader, sampler, source = make_det_loader(dataset, cfg, joined.rank, joined.size)
    heads = model.net.roi_heads
    iters: list[float] = []
    sums: dict[str, float] = {}

    def on_epoch(epoch: int, decided: dict | None) -> dict:
        sampler.set_epoch(epoch)
        if isinstance(source, RandomFlip):
            source.epoch = epoch
        if heads.confusion is not None:  # a run resumed mid-epoch keeps the epoch's decision, not today's M
            heads.pcb_active = decided["pcb"] if decided else \
                epoch >= getattr(cfg, "pcb_start", 0) and heads.confusion.ready
        sums.clear()
        return {"pcb": bool(heads.pcb_active)}

    def step(net: torch.nn.Module, images: list, targets: list, gen: torch.Generator) -> tuple[torch.Tensor, int, int]:
        losses = net(images, targets)
        keys = loss_keys or tuple(losses)
        loss = sum(losses[k] for k in keys)
        iters.append(round(reduce_sum([float(loss.detach())], joined)[0] / joined.size, 5))
        for k in keys:
            sums[k] = sums.get(k, 0.0) + float(losses[k].detach())
        return loss, len(images), 0

    def epoch_record(epoch: int, loss_sum: float, total: float, right: float) -> dict:
        mean = {k: round(v / len(loader), 4) for k, v in sums.items()}
        return {"epoch": epoch + 1, "pcb": bool(heads.pcb_active), **mean}

    def optimizer(params: list, steps: int) -> tuple:
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.wd)
        return opt, warmup_cosine(opt, steps, cfg.warmup)

    # early RPN / box losses spike (NaN at lr 0.02 without the clip)
    parts = LoopParts(desc=stage, optimizer=optimizer, clip=cfg.clip, sharded=True, find_unused=True,
                      resumable=stage == "stage 1", on_epoch=on_epoch, epoch_record=epoch_record,
                      extra_history=lambda: {"iterations": iters})
    return train_epochs(model, loader, cfg, step, parts=parts)


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def to_coco_results(output: dict, image_id: int, category_ids: list[int]) -> list[dict]:
    """One image's detections in image pixels (boxes xyxy, labels 1..K, scores, optional pasted masks)
    in COCO results format, with the dataset's category ids."""
    boxes = np.asarray(output["boxes"], np.float64)
    labels, scores = np.asarray(output["labels"]), np.asarray(output["scores"])
    masks = output.get("masks")
    results = []
    for i in range(len(scores)):
        x0, y0, x1, y1 = boxes[i]
        det = {"image_id": int(image_id), "category_id": category_ids[int(labels[i]) - 1],
               "bbox": [round(float(x0), 3), round(float(y0), 3), round(float(x1 - x0), 3), round(float(y1 - y0), 3)],
               "score": round(float(scores[i]), 6)}
        if masks is not None:
            det["segmentation"] = _rle(masks[i].full())
        results.append(det)
    return results


@torch.no_grad()
def detect(model: LTDetector, dataset: LVISDataset, desc: str = "detect") -> list[dict]:
    """COCO-results detections of a whole split in the images' pixels (mapped back with the preprocessing's
    geometry, as `ltdeploy predict` does), model in eval mode.

    One image at a time, as the exported graph runs: a batch pads every image to the largest one, and the
    padding changes the features near a smaller image's bottom and right edges.
    """
    model.eval()
    device = module_device(model)  # where it trained
    results = []
    for i in tqdm(range(len(dataset)), desc=desc, unit="img", leave=False):
        image, target = dataset[i]
        out = model([image.to(device)])[0]
        geo = dataset.preprocess.geometry(*target["orig_size"])
        dets = to_image({k: v.float().cpu().numpy() for k, v in out.items()}, geo)
        results += to_coco_results(dets, target["image_id"], dataset.class_ids)
    return results


@torch.no_grad()
def gt_box_confusion(model: LTDetector, dataset: LVISDataset, batch_size: int = 8) -> np.ndarray:
    """M (K x K): row y is the mean foreground probability over the split's ground-truth boxes of class y,
    each box given to the RoI head as its own proposal (rows of unseen classes stay zero)."""
    model.eval()
    net, device = model.net, module_device(model)
    k = len(dataset.categories)
    sums, counts = np.zeros((k, k)), np.zeros(k)
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        images, targets = net.transform([img.to(device) for img, _ in items],
                                        [{"boxes": t["boxes"].to(device), "labels": t["labels"]} for _, t in items])
        features = net.backbone(images.tensors)
        boxes = [t["boxes"] for t in targets]
        pooled = net.roi_heads.box_roi_pool(features, boxes, images.image_sizes)
        logits, _ = net.roi_heads.box_predictor(pooled)
        probs = logits[:, 1:].float().softmax(1).cpu().numpy()
        labels = torch.cat([t["labels"] for t in targets]).cpu().numpy() - 1
        np.add.at(sums, labels, probs)
        counts += np.bincount(labels, minlength=k)
    return sums / np.maximum(counts, 1)[:, None]
