"""Turn a classification split into model-ready batches with the runtime's own decoding and preprocessing (or the
recipe's augmentation of the decoded images)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ltdeploy.datasets.lists import Split
from ltdeploy.errors import ImageError
from ltdeploy.image_io import read_image
from ltdeploy.preprocess import PreprocessConfig, preprocess_image
from training.core.bad_images import BadImage, collate_good
from training.core.preload import InMemory, decode_all, fits_in_memory
from training.core.transforms import augment_image


class EvalView:
    """A decoded image → the runtime's tensor for it (what `ltdeploy predict` feeds the model)."""

    def __init__(self, cfg: PreprocessConfig) -> None:
        self.cfg = cfg

    def __call__(self, rgb: np.ndarray, label: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(preprocess_image(rgb, self.cfg)), label


class AugmentView:
    """A decoded image → the recipe's v2 augmentation of it, mapped to the model's values as the runtime does."""

    def __init__(self, cfg: PreprocessConfig, transforms) -> None:
        self.cfg, self.transforms = cfg, transforms

    def __call__(self, rgb: np.ndarray, label: int) -> tuple[torch.Tensor, int]:
        return augment_image(self.transforms, rgb, self.cfg), label


class ListDataset(Dataset):
    """Decodes one image per item (as `ltdeploy predict` does) and maps it by `view` (default: the eval
    preprocessing); with `skip_bad` an unreadable image gives a BadImage instead of an error (training)."""

    def __init__(self, split: Split, cfg: PreprocessConfig, skip_bad: bool = False, view=None) -> None:
        self.split, self.skip_bad, self.view = split, skip_bad, view or EvalView(cfg)

    def __len__(self) -> int:
        return len(self.split.paths)

    def decode(self, i: int) -> tuple[np.ndarray, int] | BadImage:
        """The decoded image and its label."""
        try:
            rgb = read_image(self.split.paths[i])
        except ImageError as exc:
            if not self.skip_bad:
                raise
            return BadImage(str(self.split.paths[i]), str(exc))
        return rgb, int(self.split.labels[i])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | BadImage:
        item = self.decode(i)
        return item if isinstance(item, BadImage) else self.view(*item)


def preload(split: Split, cfg: PreprocessConfig, desc: str = "decode", skip_bad: bool = False,
            view=None) -> InMemory:
    """The readable images of a split decoded once and kept (uint8, as decoded), each mapped by `view` (default
    the eval preprocessing) when fetched; `skipped`: the unreadable ones left out (with skip_bad)."""
    source = ListDataset(split, cfg, skip_bad, view)
    return decode_all(len(source), source.decode, source.view, desc)


def in_memory(split: Split, cfg: PreprocessConfig) -> bool:
    """Whether the split's decoded images fit the preload budget."""
    return fits_in_memory(split.paths, cfg.input_size)


def make_loader(split: Split, cfg: PreprocessConfig, batch_size: int, shuffle: bool, workers: int = 2,
                seed: int = 0, desc: str = "decode", skip_bad: bool = False) -> DataLoader:
    """A DataLoader over the split: decoded once into memory when small, streamed through worker processes
    when large. With `skip_bad` (training) unreadable images are left out and counted rather than stopping
    the run."""
    small = in_memory(split, cfg)
    ds = preload(split, cfg, desc, skip_bad) if small else ListDataset(split, cfg, skip_bad)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen, num_workers=0 if small else workers,
                        drop_last=False, collate_fn=collate_good if skip_bad and not small else None,
                        persistent_workers=not small and workers > 0)
    loader.bad_images = getattr(ds, "skipped", 0)
    return loader
