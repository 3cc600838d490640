"""Features and logits of a split through ONNX Runtime: the user's graph with its feature tensor(s) and logits as
extra outputs, fed the runtime's own preprocessing in batches, under a progress bar."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ltdeploy.calibrate.head import Head
from ltdeploy.errors import ImageError
from ltdeploy.image_io import read_image
from ltdeploy.preprocess import PreprocessConfig, preprocess_image


@dataclass
class Cached:
    """A split's features x (N, d), original logits z (N, K) and labels y (N,); `skipped` unreadable images
    (training splits only)."""

    x: np.ndarray
    z: np.ndarray
    y: np.ndarray
    skipped: int = 0

    def as_tuple(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, z, y)."""
        return self.x, self.z, self.y


def batch_size_of(session, wanted: int) -> int:
    """`wanted`, or the input's fixed batch size when the graph has one."""
    dim = session.get_inputs()[0].shape[0]
    return dim if isinstance(dim, int) and dim > 0 else wanted


def cache_split(session, head: Head, paths: list[str], labels: np.ndarray, pre: PreprocessConfig, batch: int,
                desc: str, skip_bad: bool = False) -> Cached:
    """Run every image of the split; features and logits of the readable ones (unreadable ones are skipped and
    counted with `skip_bad`, else they stop the run)."""
    input_name = session.get_inputs()[0].name
    names = [*head.features, head.logits]
    batch = batch_size_of(session, batch)
    xs, zs, ys, skipped = [], [], [], 0
    with tqdm(total=len(paths), desc=desc, unit="img", leave=False) as bar:
        for start in range(0, len(paths), batch):
            images, kept = [], []
            for i in range(start, min(start + batch, len(paths))):
                try:
                    images.append(preprocess_image(read_image(paths[i]), pre))
                    kept.append(i)
                except ImageError:
                    if not skip_bad:
                        raise
                    skipped += 1
            bar.update(min(batch, len(paths) - start))
            if not images:
                continue
            out = session.run(names, {input_name: np.stack(images)})
            xs.append(np.concatenate([f.reshape(len(kept), -1) for f in out[:-1]], 1).astype(np.float32))
            zs.append(out[-1].reshape(len(kept), -1).astype(np.float32))
            ys.append(labels[kept])
    return Cached(np.concatenate(xs), np.concatenate(zs), np.concatenate(ys), skipped)
