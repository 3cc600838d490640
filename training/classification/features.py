"""What stage 2 trains on: frozen features of the training split, from a cache or recomputed.

The backbone is frozen (eval mode) and stage 2 uses no augmentation by default, so features are
computed once and every epoch reads the cache (`--no-cache` recomputes them each epoch, the way the
reference code does; `--augment` recomputes them from augmented images). The cache is also kept on
disk beside the stage-1 checkpoint, keyed by the checkpoint's hash, the split's list file and the
preprocessing, so every further method calibrating the same model skips the backbone entirely.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Iterator

import torch
from torch.utils.data import DataLoader

from ltdeploy.datasets.classification_sets import read_split, split_fingerprint
from ltdeploy.datasets.lists import Split
from ltdeploy.files import atomic_path
from ltdeploy.preprocess import PreprocessConfig
from training.classification.data import make_loader
from training.classification.model import LTClassifier
from training.config import TrainConfig
from training.core.device import module_device
from training.core.loops import augment, extract_features
from training.core.preload import InMemory


class Stage2Data:
    """Per-epoch (features, labels) batches, instance- or class-balanced."""

    def __init__(self, model: LTClassifier, train: Split, cfg: PreprocessConfig, run: TrainConfig,
                 stage1_sha256: str = "") -> None:
        self.model, self.train, self.cfg, self.run = model, train, cfg, run
        self.stage1_sha256 = stage1_sha256
        self.counts = train.class_counts()  # from the training annotations, never from an external file
        self.gen = torch.Generator().manual_seed(run.seed)
        self.cached = not (run.augment or run.no_cache)
        self.labels = torch.from_numpy(train.labels)
        self._images = None
        self._features: torch.Tensor | None = None
        self._val: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def images(self):
        """The decoded training images (decoded on first use: a warm feature cache never needs them)."""
        if self._images is None:
            self._images = make_loader(self.train, self.cfg, 256, shuffle=False, workers=self.run.workers,
                                       desc="train").dataset
        return self._images

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch."""
        return -(-len(self.labels) // self.run.batch_size)

    def _disk_cache(self, split: str, compute) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of a split from the on-disk cache, or computed and stored there (atomically)."""
        if not self.stage1_sha256 or self.run.no_cache:
            return compute()
        listing = hashlib.sha256(split_fingerprint(self.run.data, split)).hexdigest()
        key = hashlib.sha256(json.dumps([self.stage1_sha256, listing, os.path.abspath(self.run.data),
                                         self.cfg.to_dict()]).encode()).hexdigest()[:16]
        folder = self.run.checkpoint + ".features"
        path = os.path.join(folder, f"{split}-{key}.pt")
        if os.path.exists(path):
            cached = torch.load(path, weights_only=True)
            return cached["features"], cached["labels"]
        feats, labels = compute()
        with atomic_path(path) as tmp:
            torch.save({"features": feats, "labels": labels}, tmp)
        return feats, labels

    def features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Un-augmented training features (N, d) and labels, computed once."""
        if self._features is None:
            streamed = not isinstance(self.images, InMemory)  # large sets decode in --workers processes
            self._features, _ = self._disk_cache("train", lambda: extract_features(
                self.model, DataLoader(self.images, batch_size=256, shuffle=False,
                                       num_workers=self.run.workers if streamed else 0), desc="cache features"))
        return self._features, self.labels

    def val_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Validation features and labels (for choosing hyper-parameters such as tau; never test)."""
        if self._val is None:
            val = read_split(self.run.data, "val", num_classes=len(self.counts))
            self._val = self._disk_cache("val", lambda: extract_features(
                self.model, make_loader(val, self.cfg, 256, shuffle=False, desc="val"), desc="val features"))
        return self._val

    def _order(self, balanced: bool) -> torch.Tensor:
        n = len(self.labels)
        if not balanced:
            return torch.randperm(n, generator=self.gen)
        per_sample = 1.0 / torch.as_tensor(self.counts, dtype=torch.float64)[self.labels]
        return torch.multinomial(per_sample, n, replacement=True, generator=self.gen)

    def batches(self, balanced: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of (features, labels): shuffled (instance-balanced) or class-balanced sampling."""
        order = self._order(balanced)
        bs = self.run.batch_size
        if self.cached:
            feats, labels = self.features()
            for i in range(0, len(order), bs):
                idx = order[i:i + bs]
                yield feats[idx], labels[idx]
            return
        small = isinstance(self.images, InMemory)
        loader = DataLoader(self.images, batch_size=bs, sampler=order.tolist(),
                            num_workers=0 if small else self.run.workers)
        for x, y in loader:
            with torch.no_grad():  # never yield inside no_grad: the mode would leak into the consumer
                if self.run.augment:
                    x = augment(x, self.run.shift, self.run.hflip, self.gen)
                feat = self.model.forward_features(x.to(module_device(self.model), non_blocking=True))
            yield feat, y
