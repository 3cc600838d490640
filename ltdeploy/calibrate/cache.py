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
    """A split's features x (N, d), original logits z (N, K) and labels y (P,); `skipped` unreadable images
    (training splits only). A classifier's rows are its samples (N = P). A segmenter's rows are cells of the
    classifier's coarse maps and its samples are pixels: pixel p mixes the calibrated logits of cells taps[p]
    (P, 4) with bilinear weights[p] (P, 4), as the graph's Resize does after the folded calibration; image i's
    pixels are starts[i] .. starts[i + 1]."""

    x: np.ndarray
    z: np.ndarray
    y: np.ndarray
    skipped: int = 0
    taps: np.ndarray | None = None
    weights: np.ndarray | None = None
    starts: np.ndarray | None = None

    def as_tuple(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, z, y)."""
        return self.x, self.z, self.y

    @property
    def mixing(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(taps, weights, starts) for pixels, None for a classifier's samples."""
        return None if self.taps is None else (self.taps, self.weights, self.starts)

    def logits(self, cal) -> np.ndarray:
        """Each sample's logits under the calibration `cal` (P, K)."""
        return mix(cal.apply(self.x, self.z), self.mixing)


def mix(rows: np.ndarray, mixing: tuple[np.ndarray, ...] | None) -> np.ndarray:
    """Per-sample values from per-row ones: the rows themselves, or each pixel's weighted sum of its four cells."""
    if mixing is None:
        return rows
    taps, weights = mixing[:2]
    return np.einsum("pj,pjk->pk", weights, rows[taps])


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


def bilinear_taps(rows: np.ndarray, cols: np.ndarray, size: tuple[int, int], grid: tuple[int, int]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """For pixels (rows, cols) of an image of `size` (H, W): the four cells of a `grid` (h, w) map a bilinear
    resize reads them from (half-pixel centres, as torch's interpolate and ONNX Resize do) as flat indices (P, 4),
    and their weights (P, 4)."""
    (big_h, big_w), (h, w) = size, grid
    sy = np.clip((rows + 0.5) * h / big_h - 0.5, 0, h - 1)
    sx = np.clip((cols + 0.5) * w / big_w - 0.5, 0, w - 1)
    y0, x0 = np.floor(sy).astype(np.int64), np.floor(sx).astype(np.int64)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = sy - y0, sx - x0
    taps = np.stack([y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1], 1)
    weights = np.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], 1)
    return taps, weights


def cache_pixels(session, head: Head, split, pre: PreprocessConfig, to_model: np.ndarray, per_image: int,
                 seed: int, desc: str, skip_bad: bool = False) -> Cached:
    """Labelled pixels of a segmentation split, `per_image` drawn (seeded) from each label map at the model
    input's size, with the classifier's features and logits at the coarse cells each pixel's bilinear upsampling
    reads (each cell kept once per image). Small objects, which a label map reduced to the classifier's
    resolution would lose, are sampled too; no split's maps are ever held whole."""
    import cv2

    from ltdeploy.datasets.seg_folders import IGNORE

    input_name = session.get_inputs()[0].name
    names = [*head.features, head.logits]
    rng = np.random.default_rng(seed)
    lookup = np.full(256, IGNORE, np.int64)
    lookup[:len(to_model)] = to_model
    xs, zs, ys, taps, weights, cells, skipped = [], [], [], [], [], 0, 0
    for i in tqdm(range(len(split.images)), desc=desc, unit="img", leave=False):
        try:
            x = preprocess_image(read_image(split.images[i]), pre)[None]
        except ImageError:
            if not skip_bad:
                raise
            skipped += 1
            continue
        out = session.run(names, {input_name: x})
        labels = lookup[cv2.resize(split.read_labels(i), pre.input_size[::-1], interpolation=cv2.INTER_NEAREST)]
        valid = np.flatnonzero(labels.reshape(-1) != IGNORE)
        take = valid if len(valid) <= per_image else rng.choice(valid, per_image, replace=False)
        flat, w = bilinear_taps(take // labels.shape[1], take % labels.shape[1], labels.shape, out[-1].shape[2:])
        used, where = np.unique(flat, return_inverse=True)
        xs.append(np.concatenate([f[0].reshape(f.shape[1], -1)[:, used] for f in out[:-1]], 0).T)
        zs.append(out[-1][0].reshape(out[-1].shape[1], -1)[:, used].T)
        taps.append(cells + where.reshape(flat.shape))
        weights.append(w)
        ys.append(labels.reshape(-1)[take])
        cells += len(used)
    starts = np.cumsum([0, *(len(t) for t in ys)])
    return Cached(np.concatenate(xs).astype(np.float32), np.concatenate(zs).astype(np.float32), np.concatenate(ys),
                  skipped, np.concatenate(taps), np.concatenate(weights).astype(np.float32), starts)
