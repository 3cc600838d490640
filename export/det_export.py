"""Detection export: the whole torchvision detector (normalise, RPN, RoI branch with every PCB pass,
the candidate cap, per-class NMS, the mask head) as one ONNX graph, and its parity check.

The graph takes one RGB image (1, 3, h, w) in 0..1 as the model's preprocessing resized it (any h and w:
short side to min_size, long side at most max_size) and returns boxes (N, 4) xyxy in those input pixels,
labels (N,) 1..K, scores (N,) and, for Mask R-CNN, masks (N, 1, 28, 28): each box's mask probabilities.
The preprocessing's Geometry maps the boxes back to the photo and `ltdeploy.masks` pastes the masks there;
the graph holds no loop (TensorRT cannot build torchvision's mask-pasting loop, whose output grows).
N <= 300; before NMS the candidates are capped as `training.detection.candidates` describes.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings
from dataclasses import dataclass
from unittest import mock

import numpy as np
import torch
from torch import nn
from torchvision.ops import poolers

from export.onnx_export import OPSET, embed_description, export_description, op_counts, verified_write
from ltdeploy.backends.onnxruntime import OnnxRuntimeBackend
from ltdeploy.files import file_sha256
from ltdeploy.image_io import read_image
from ltdeploy.preprocess import preprocess_image
from training.detection.candidate_cap import CandidateCap
from training.detection.model import LTDetector

DET_OUTPUTS = ("boxes", "labels", "scores", "masks")


def set_candidate_cap(model: LTDetector, per_class: int | None, total: int | None) -> None:
    """Override the detector's candidate cap where given (None keeps the checkpoint's)."""
    heads = model.net.roi_heads
    cap = heads.candidate_cap
    heads.candidate_cap = CandidateCap(cap.per_class if per_class is None else per_class,
                                       cap.total if total is None else total)
    model.arch = dict(model.arch, candidates_per_class=heads.candidate_cap.per_class,
                      candidates=heads.candidate_cap.total)


def detection_postprocess(model: LTDetector) -> dict:
    """What happens between the RoI head and the outputs, for the model description and `ltdeploy info`."""
    heads = model.net.roi_heads
    out = {"score_threshold": float(heads.score_thresh), "candidates_per_class": heads.candidate_cap.per_class,
           "candidates": heads.candidate_cap.total, "nms_iou": float(heads.nms_thresh),
           "detections": int(heads.detections_per_img)}
    if model.arch.get("masks"):
        out["masks"] = "box"  # (N, 1, 28, 28) probabilities in each box, pasted by the runtime
    return out


def merge_levels_by_gather(levels: torch.Tensor, unmerged: list[torch.Tensor]) -> torch.Tensor:
    """Put each FPN level's pooled RoIs back in RoI order with one Gather.

    torchvision's ONNX path scatters every level into a zero tensor with an index expanded to N x C x 7 x 7:
    56% of ONNX Runtime's time for our detector on CPU. Here only the N-long inverse permutation is scattered.
    """
    order = torch.cat([torch.where(levels == level)[0] for level in range(len(unmerged))])
    inverse = torch.zeros_like(order).scatter(0, order, torch.arange(order.numel(), device=order.device))
    return torch.cat(unmerged).index_select(0, inverse)


class DetectorGraph(nn.Module):
    """Tensor in, tensors out: what torch.onnx.export needs around a torchvision detector."""

    def __init__(self, model: LTDetector) -> None:
        super().__init__()
        self.net = model.net
        self.masks = bool(model.arch.get("masks"))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(1, 3, H, W) → boxes, labels, scores(, masks)."""
        out = self.net([images[0]])[0]
        return tuple(out[k] for k in DET_OUTPUTS[:4 if self.masks else 3])


def export_detector(model: LTDetector, path: str, input_size: tuple[int, int], input_name: str) -> list[str]:
    """Trace the detector into ONNX (TorchScript exporter: torchvision detectors need dynamo=False)."""
    graph = DetectorGraph(model).eval()
    names = list(DET_OUTPUTS[:4 if graph.masks else 3])
    axes = {input_name: {2: "height", 3: "width"}, **{n: {0: "detections"} for n in names}}
    dummy = torch.rand(1, 3, *input_size)
    with warnings.catch_warnings(), mock.patch.object(poolers, "_onnx_merge_levels", merge_levels_by_gather):
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (dummy,), path, input_names=[input_name], output_names=names, dynamic_axes=axes,
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    return names


@dataclass
class DetParityReport:
    """ONNX Runtime vs PyTorch on the same images: the top detections compared one to one."""

    images: int
    compared: int
    unmatched: int
    max_box_rel_diff: float
    max_score_diff: float
    max_mask_diff: float = 0.0

    def ok(self, box_tol: float = 1e-3, score_tol: float = 1e-4) -> bool:
        """Every detection paired with one of the same label, boxes within box_tol (relative to the image size),
        scores and mask probabilities within score_tol / 1e-3."""
        return (self.unmatched == 0 and self.max_box_rel_diff <= box_tol
                and self.max_score_diff <= score_tol and self.max_mask_diff <= 1e-3)


def match_detections(ref: dict, got: dict) -> tuple[int, float, float, float]:
    """Pair each reference detection with an unused one of the same label and the nearest box (greedy, by
    reference score). Returns (unmatched, max abs box diff, max abs score diff, max abs mask-probability
    diff) over the pairs (the last 0 without masks).

    Pairing by label and box rather than by rank keeps near-equal scores (an untrained head gives hundreds)
    from failing the check on ordering alone.
    """
    used = np.zeros(len(got["scores"]), bool)
    unmatched, box_diff, score_diff, mask_diff = 0, 0.0, 0.0, 0.0
    for i in np.argsort(-ref["scores"], kind="stable"):
        cand = np.flatnonzero(~used & (got["labels"] == ref["labels"][i]))
        if len(cand) == 0:
            unmatched += 1
            continue
        dist = np.abs(got["boxes"][cand] - ref["boxes"][i]).max(1)
        j = cand[int(np.argmin(dist))]
        used[j] = True
        box_diff = max(box_diff, float(dist.min()))
        score_diff = max(score_diff, abs(float(got["scores"][j]) - float(ref["scores"][i])))
        if "masks" in ref and "masks" in got:
            mask_diff = max(mask_diff, float(np.abs(got["masks"][j] - ref["masks"][i]).max()))
    return unmatched + int((~used).sum()), box_diff, score_diff, mask_diff


def parity_report(refs: list[dict], gots: list[dict], sizes: list[tuple[int, int]],
                  min_score: float = 0.05) -> DetParityReport:
    """Compare PyTorch's and ONNX Runtime's detections scoring >= min_score, image by image (input sizes
    (h, w) scale the box differences), paired by label and box."""
    compared = counts = 0
    box_diff = score_diff = mask_diff = 0.0
    for ref, got, size in zip(refs, gots, sizes):
        ref = {k: v[ref["scores"] >= min_score] for k, v in ref.items()}
        got = {k: v[got["scores"] >= min_score] for k, v in got.items()}
        unmatched, b, sc, mk = match_detections(ref, got)
        mask_diff = max(mask_diff, mk)
        counts += unmatched
        compared += len(ref["scores"])
        box_diff = max(box_diff, b / max(size))
        score_diff = max(score_diff, sc)
    return DetParityReport(len(refs), compared, counts, box_diff, score_diff, mask_diff)


@torch.no_grad()
def torch_detections(model: LTDetector, images: list[np.ndarray]) -> list[dict]:
    """PyTorch's raw detections (model-input pixels) for preprocessed images (3, h, w)."""
    model.eval()
    return [{k: v.numpy() for k, v in model.net([torch.from_numpy(img)])[0].items()} for img in images]


def check_det_parity(onnx_path: str, model: LTDetector, images: list[np.ndarray],
                     min_score: float = 0.05) -> DetParityReport:
    """Compare the detections scoring >= min_score of each image (3, H, W float 0..1), paired by label
    and box. Below that, near-ties sit at the NMS and score-threshold edges; AP over the whole output is
    compared separately (evaluate.py)."""
    backend = OnnxRuntimeBackend(onnx_path)
    name = backend.description.input_name
    gots = [backend.run({name: img[None]}) for img in images]
    return parity_report(torch_detections(model, images), gots, [img.shape[1:] for img in images], min_score)


def export_detection(args: argparse.Namespace, ck, module: nn.Module, fold: str, paths: list[str], split: str) -> int:
    """Export the whole detector, check its top detections against PyTorch on `paths`, move into place."""
    for model in (ck.model, module):
        set_candidate_cap(model, args.candidates_per_class, args.candidates)
    desc = dataclasses.replace(ck.description, postprocess=detection_postprocess(module))
    count = min(args.verify_images, 50) if args.verify_images > 0 else 0
    images = [preprocess_image(read_image(p), desc.preprocess) for p in (paths[:count] if count > 0 else paths)]
    ops: dict[str, int] = {}

    def write(tmp: str) -> bool:
        outputs = export_detector(module, tmp, desc.preprocess.shape_range()[1], desc.input_name)
        embed_description(tmp, export_description(desc, fold, file_sha256(args.checkpoint), outputs))
        ops.update(op_counts(tmp))
        report = check_det_parity(tmp, ck.model, images)
        sizes = sorted({f"{x.shape[2]}x{x.shape[1]}" for x in images})
        print(f"parity vs PyTorch on {report.images} {split} images ({', '.join(sizes[:6])}"
              f"{' ...' if len(sizes) > 6 else ''}; {report.compared} detections with score >= "
              f"0.05): unmatched {report.unmatched}, max box diff {report.max_box_rel_diff:.2e} of the image side, "
              f"max score diff {report.max_score_diff:.2e}, max mask diff {report.max_mask_diff:.2e}")
        if not report.ok():
            print("error: parity check failed (every detection paired with one of the same label, boxes within "
                  "1e-3 relative, scores within 1e-4); nothing written", file=sys.stderr)
        return report.ok()

    if verified_write(args.output, write):
        return 1
    print(f"wrote {args.output} ({os.path.getsize(args.output) / 1e6:.2f} MB, fold {fold}, "
          f"{sum(ops.values())} nodes, NonMaxSuppression {ops.get('NonMaxSuppression', 0)} (RPN, per-class))")
    return 0
