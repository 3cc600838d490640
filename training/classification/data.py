"""Turn a list split into model-ready batches with the runtime's own decoding and preprocessing."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm import tqdm

from ltdeploy.datasets.lists import Split
from ltdeploy.image_io import read_image
from ltdeploy.preprocess import PreprocessConfig, preprocess_image

PRELOAD_LIMIT_BYTES = 2 << 30  # sets smaller than this are decoded once and kept in memory


class ListDataset(Dataset):
    """Decodes and preprocesses one image per item, exactly as `ltdeploy predict` does."""

    def __init__(self, split: Split, cfg: PreprocessConfig) -> None:
        self.split, self.cfg = split, cfg

    def __len__(self) -> int:
        return len(self.split.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = preprocess_image(read_image(self.split.paths[i]), self.cfg)
        return torch.from_numpy(x), int(self.split.labels[i])


def preload(split: Split, cfg: PreprocessConfig, desc: str = "decode") -> TensorDataset:
    """All images of a split as one float tensor (N, 3, H, W) plus labels, decoded in threads."""
    ds = ListDataset(split, cfg)
    with ThreadPoolExecutor(4) as pool:
        xs = list(tqdm(pool.map(lambda i: ds[i][0], range(len(ds))), total=len(ds), desc=desc,
                       unit="img", leave=False))
    x = torch.stack(xs) if xs else torch.zeros(0, 3, *cfg.input_size)
    return TensorDataset(x, torch.from_numpy(split.labels))


def make_loader(split: Split, cfg: PreprocessConfig, batch_size: int, shuffle: bool, workers: int = 2,
                seed: int = 0, desc: str = "decode") -> DataLoader:
    """A DataLoader over the split: preloaded when small, streamed through worker processes when large."""
    h, w = cfg.input_size
    small = len(split.paths) * 3 * h * w * 4 < PRELOAD_LIMIT_BYTES
    ds = preload(split, cfg, desc) if small else ListDataset(split, cfg)
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen,
                      num_workers=0 if small else workers, drop_last=False)

