"""Segmentation evaluation of a checkpoint or an ONNX file: mIoU and mAcc, overall and head / body / tail.

Prediction runs at the model's input size; the predicted label map is resized (nearest) to each label
map's own size, as `ltdeploy predict` does, and ignore pixels are skipped.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
from tqdm import tqdm

from ltdeploy.errors import DatasetError
from ltdeploy.image_io import read_image
from ltdeploy.metadata import ModelDescription
from ltdeploy.preprocess import preprocess_image
from ltdeploy.segment import label_maps
from training.segmentation.data import SegSplit, read_seg_split
from training.segmentation.metrics import ConfusionAccumulator, segmentation_scores

LabelFn = Callable[[np.ndarray], np.ndarray]  # preprocessed batch (N, 3, H, W) → label maps (N, H, W)
SEG_HEADER = f"{'model':<28} {'mIoU':>6} {'head':>6} {'body':>6} {'tail':>6}   {'mAcc':>6} {'head':>6} " \
             f"{'body':>6} {'tail':>6}"


def seg_label_fn(model_path: str) -> tuple[ModelDescription, LabelFn]:
    """The description and a batch → label-map function for a checkpoint (.pt) or an ONNX file."""
    if model_path.endswith(".onnx"):
        from ltdeploy.backends import load_backend
        backend = load_backend(model_path)
        desc = backend.description

        def run(x: np.ndarray) -> np.ndarray:
            return label_maps(backend.run({desc.input_name: x}), desc.output_names[0])
        return desc, run
    import torch

    from training.core.checkpoint import read_checkpoint
    ck = read_checkpoint(model_path)

    def run_torch(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return ck.model(torch.from_numpy(x)).argmax(1).numpy()
    return ck.description, run_torch


def seg_confusion(run: LabelFn, split: SegSplit, desc: ModelDescription, batch_size: int = 16,
                  name: str = "eval") -> np.ndarray:
    """K x K pixel confusion of a model over a split, at each label map's own size."""
    acc = ConfusionAccumulator(desc.num_classes)

    def load(i: int) -> tuple[np.ndarray, np.ndarray]:
        rgb, lab = read_image(split.images[i]), split.read_labels(i)
        if lab.shape != rgb.shape[:2]:
            raise DatasetError(f"{split.labels[i]}: label map is {lab.shape[1]}x{lab.shape[0]}, its image "
                               f"{rgb.shape[1]}x{rgb.shape[0]}")
        return preprocess_image(rgb, desc.preprocess), lab
    with ThreadPoolExecutor(2) as pool:
        for start in tqdm(range(0, len(split.images), batch_size), desc=name, unit="batch", leave=False):
            pairs = list(pool.map(load, range(start, min(start + batch_size, len(split.images)))))
            pred = run(np.stack([x for x, _ in pairs]))
            for p, (_, lab) in zip(pred, pairs):
                labels = p.astype(np.uint8 if desc.num_classes <= 256 else np.uint16)
                acc.update(desc.preprocess.geometry(*lab.shape).labels_to_image(labels), lab)
    return acc.matrix


def evaluate_segmentation(model_path: str, data_dir: str, split: str = "val", batch_size: int = 16) -> dict:
    """mIoU / mAcc overall and per group, per-class IoU, the description and the confusion matrix."""
    desc, run = seg_label_fn(model_path)
    data = read_seg_split(data_dir, split)
    if data.class_names != desc.class_names:
        raise ValueError(f"{data_dir}: its {len(data.class_names)} class names differ from the model's "
                         f"{desc.num_classes}")
    matrix = seg_confusion(run, data, desc, batch_size, split)
    return {"description": desc, "confusion": matrix, "images": len(data.images),
            **segmentation_scores(matrix, desc.groups)}


def format_seg_scores(name: str, s: dict) -> str:
    """One table row: mIoU overall / head / body / tail, then mAcc likewise (in %)."""
    def pct(v: float | None) -> str:
        return "   -  " if v is None else f"{100 * v:6.2f}"
    iou = " ".join(pct(s[k]) for k in ("mIoU", "head_mIoU", "body_mIoU", "tail_mIoU"))
    acc = " ".join(pct(s[k]) for k in ("mAcc", "head_mAcc", "body_mAcc", "tail_mAcc"))
    return f"{name:<28} {iou}   {acc}"
