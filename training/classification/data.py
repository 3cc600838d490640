"""Turn a list split into model-ready batches with the runtime's own decoding and preprocessing."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm import tqdm

from ltdeploy.datasets.lists import Split
from ltdeploy.errors import ImageError
from ltdeploy.image_io import read_image
from ltdeploy.preprocess import PreprocessConfig, preprocess_image
from training.core.bad_images import BadImage, BadImageLog, collate_good
from training.core.transforms import augment_image

PRELOAD_LIMIT_BYTES = 2 << 30  # sets smaller than this are decoded once and kept in memory


class ListDataset(Dataset):
    """Decodes and preprocesses one image per item, exactly as `ltdeploy predict` does; with `skip_bad` an
    unreadable image gives a BadImage instead of an error (training)."""

    def __init__(self, split: Split, cfg: PreprocessConfig, skip_bad: bool = False) -> None:
        self.split, self.cfg, self.skip_bad = split, cfg, skip_bad

    def __len__(self) -> int:
        return len(self.split.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | BadImage:
        try:
            x = preprocess_image(read_image(self.split.paths[i]), self.cfg)
        except ImageError as exc:
            if not self.skip_bad:
                raise
            return BadImage(str(self.split.paths[i]), str(exc))
        return torch.from_numpy(x), int(self.split.labels[i])


class AugmentedListDataset(Dataset):
    """Training images decoded in the loader's workers and augmented there by the recipe's v2 transforms, then
    mapped to the model's values as the runtime does; unreadable ones give a BadImage."""

    def __init__(self, split: Split, cfg: PreprocessConfig, transforms) -> None:
        self.split, self.cfg, self.transforms = split, cfg, transforms

    def __len__(self) -> int:
        return len(self.split.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | BadImage:
        try:
            rgb = read_image(self.split.paths[i])
        except ImageError as exc:
            return BadImage(str(self.split.paths[i]), str(exc))
        return augment_image(self.transforms, rgb, self.cfg), int(self.split.labels[i])


def preload(split: Split, cfg: PreprocessConfig, desc: str = "decode", skip_bad: bool = False) -> TensorDataset:
    """All readable images of a split as one float tensor (N, 3, H, W) plus labels, decoded in threads
    (`skipped` on the result: the unreadable ones left out, with skip_bad)."""
    ds = ListDataset(split, cfg, skip_bad)
    with ThreadPoolExecutor(4) as pool:
        items = list(tqdm(pool.map(ds.__getitem__, range(len(ds))), total=len(ds), desc=desc,
                          unit="img", leave=False))
    log = BadImageLog()
    log.add([item for item in items if isinstance(item, BadImage)])
    good = [item for item in items if not isinstance(item, BadImage)]
    x = torch.stack([g[0] for g in good]) if good else torch.zeros(0, 3, *cfg.input_size)
    out = TensorDataset(x, torch.as_tensor([g[1] for g in good], dtype=torch.int64))
    out.skipped = log.count
    return out


def make_loader(split: Split, cfg: PreprocessConfig, batch_size: int, shuffle: bool, workers: int = 2,
                seed: int = 0, desc: str = "decode", skip_bad: bool = False) -> DataLoader:
    """A DataLoader over the split: preloaded when small, streamed through worker processes when large. With
    `skip_bad` (training) unreadable images are left out and counted rather than stopping the run."""
    h, w = cfg.input_size
    small = len(split.paths) * 3 * h * w * 4 < PRELOAD_LIMIT_BYTES
    ds = preload(split, cfg, desc, skip_bad) if small else ListDataset(split, cfg, skip_bad)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen, num_workers=0 if small else workers,
                        drop_last=False, collate_fn=collate_good if skip_bad and not small else None,
                        persistent_workers=not small and workers > 0)
    loader.bad_images = getattr(ds, "skipped", 0)
    return loader

