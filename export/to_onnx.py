"""Export a checkpoint to one self-describing ONNX file, calibration folded into the graph.

    python export/to_onnx.py runs/digits/disalign.pt -o runs/digits/disalign.onnx
    python export/to_onnx.py runs/digits/disalign.pt -o naive.onnx --no-fold
    python export/to_onnx.py runs/seg/disalign.pt -o runs/seg/disalign.onnx [--argmax]

The result is verified against the PyTorch model on real images (the checkpoint's dataset, or --data)
at two batch sizes; if the max abs logit difference exceeds --tol or the argmax differs (classification:
on any image; segmentation: on more than 0.01% of pixels), nothing is written and the exit code is 1.
Segmentation graphs take any batch, height and width (checked at a second size too); `--argmax` ends
them in the label map (uint8), so the runtime never copies N x K x H x W logits.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from typing import Callable

import numpy as np
import onnx

from export.det_export import check_det_parity, detection_postprocess, export_detector, set_candidate_cap
from export.onnx_export import embed_description, export_description, export_module, op_counts
from export.parity import check_parity
from ltdeploy.errors import LtDeployError
from ltdeploy.graph_check import trt_blockers
from ltdeploy.image_io import read_image
from ltdeploy.preprocess import PreprocessConfig, preprocess_batch, preprocess_image
from training.classification.lists import read_split
from training.core.checkpoint import file_sha256, read_checkpoint
from training.detection.data import LVISDataset
from training.detection.sources import DetSource, resolve_det_source
from training.segmentation.data import read_seg_split
from training.segmentation.model import ArgmaxLabels

SEG_MIN_AGREEMENT = 0.9999  # pixels whose argmax must match (docs/method.md §6; ties at upsampled borders)


def verification_batch(data_dir: str, split: str, count: int, cfg: PreprocessConfig,
                       task: str = "classification") -> np.ndarray:
    """The first `count` images of a split, preprocessed as the model expects."""
    paths = read_seg_split(data_dir, split).images if task == "segmentation" else read_split(data_dir, split).paths
    paths = paths[:count] if count > 0 else paths
    return preprocess_batch([read_image(p) for p in paths], cfg)


def detection_images(source: DetSource, split: str, count: int, cfg: PreprocessConfig) -> list[np.ndarray]:
    """The first `count` images of a detection split, each preprocessed at its own fitted size."""
    paths = LVISDataset(source, split).image_paths()
    return [preprocess_image(read_image(p), cfg) for p in (paths[:count] if count > 0 else paths)]


def second_size(cfg: PreprocessConfig) -> PreprocessConfig:
    """The same preprocessing at 1.5x the input size, rounded up to a multiple of 32 (dynamic-size check)."""
    h, w = (-(-int(1.5 * s) // 32) * 32 for s in cfg.input_size)
    return dataclasses.replace(cfg, input_size=(h, w))


def seg_chunk(num_classes: int, size: tuple[int, int], budget: int = 256 << 20) -> int:
    """Images per parity batch for segmentation: a float32 logit map of at most `budget` bytes, 1..8.

    ORT output, torch output and their difference all live at once: 150 classes at 768x768 is 354 MB per
    image, and a fixed chunk of 8 needed 14 GB.
    """
    return max(1, min(8, budget // (4 * num_classes * size[0] * size[1])))


def verified_write(output: str, write: Callable[[str], bool]) -> int:
    """Run write(tmp) on a temporary file beside `output`; move it into place only if it returns True and
    the graph holds nothing TensorRT cannot build. Returns 0 on success, 1 otherwise (nothing half-written
    is left behind)."""
    out_dir = os.path.dirname(os.path.abspath(output))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".onnx.partial")
    os.close(fd)
    try:
        if not write(tmp):
            return 1
        blockers = trt_blockers(onnx.load(tmp, load_external_data=False))
        if blockers:
            print(f"error: the graph holds what TensorRT cannot build ({'; '.join(blockers)[:300]}); nothing "
                  "written", file=sys.stderr)
            return 1
        os.replace(tmp, output)
        return 0
    except LtDeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def detection_source(args: argparse.Namespace, provenance: dict) -> DetSource:
    """The dataset to verify on: --data, else the one the checkpoint was trained on."""
    if args.data:
        return resolve_det_source(args.data)
    if provenance.get("dataset_files"):
        return DetSource.from_dict(provenance["dataset_files"])
    return resolve_det_source(provenance.get("dataset"))


def export_detection(args: argparse.Namespace, ck, module, fold: str) -> int:
    """Detection: export the whole detector, check the top detections against PyTorch, move into place."""
    for model in (ck.model, module):
        set_candidate_cap(model, args.candidates_per_class, args.candidates)
    desc = dataclasses.replace(ck.description, postprocess=detection_postprocess(module))
    split = args.split or "val"
    count = min(args.verify_images, 50) if args.verify_images > 0 else 0
    try:
        images = detection_images(detection_source(args, desc.provenance), split, count, desc.preprocess)
    except LtDeployError as exc:
        print(f"error: {exc}; pass --data DIR", file=sys.stderr)
        return 2
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


def main(argv: list[str] | None = None) -> int:
    """Export, verify, and move into place only when parity holds."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("-o", "--output", required=True, help="ONNX file to write")
    p.add_argument("--no-fold", action="store_true", help="naive graph: separate alpha / beta / sigma nodes")
    p.add_argument("--fold-mode", default="affine", choices=["affine", "weights"],
                   help="how DisAlign folds (see training/core/folded.py)")
    p.add_argument("--data", default=None, help="dataset for the parity check (default: the checkpoint's)")
    p.add_argument("--argmax", action="store_true", help="segmentation: output the label map, not logits")
    p.add_argument("--split", default=None, help="verification split (default: test; segmentation: val)")
    p.add_argument("--verify-images", type=int, default=256, help="images checked (0: the whole split)")
    p.add_argument("--tol", type=float, default=1e-4, help="max abs logit difference allowed")
    p.add_argument("--candidates-per-class", type=int, default=None,
                   help="detection: per-class cap on candidates before NMS (default: the checkpoint's; 0: none)")
    p.add_argument("--candidates", type=int, default=None,
                   help="detection: cap on (box, class) candidates per image before NMS (default: the "
                        "checkpoint's, 3840; 2000 for TensorRT on SM 5.3 / 6.2; 0: none, not buildable)")
    args = p.parse_args(argv)

    try:
        ck = read_checkpoint(args.checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    desc = ck.description
    model = ck.model
    seg = desc.task == "segmentation"
    if args.argmax and not seg:
        print("error: --argmax is for segmentation models", file=sys.stderr)
        return 2
    fold = "none" if args.no_fold else ("plain" if model.calibrator is None else args.fold_mode)
    module = model if args.no_fold else model.folded(args.fold_mode)
    outputs = ["labels"] if args.argmax else desc.output_names
    if args.argmax:
        module = ArgmaxLabels(module, desc.num_classes)
    if desc.task == "detection":
        return export_detection(args, ck, module, fold)
    data_dir = args.data or desc.provenance.get("dataset")
    if not data_dir or not os.path.isdir(data_dir):
        print(f"error: no dataset to verify on ({data_dir!r}); pass --data DIR", file=sys.stderr)
        return 2
    split = args.split or ("val" if seg else "test")
    batch = verification_batch(data_dir, split, args.verify_images, desc.preprocess, desc.task)
    checks = [(batch, desc.preprocess.input_size)]
    if seg:
        other = second_size(desc.preprocess)
        checks.append((verification_batch(data_dir, split, 8, other, desc.task), other.input_size))

    ops: dict[str, int] = {}

    def write(tmp: str) -> bool:
        export_module(module, tmp, desc.preprocess.input_size, desc.input_name, outputs, dynamic_size=seg)
        embed_description(tmp, export_description(desc, fold, file_sha256(args.checkpoint), outputs))
        ops.update(op_counts(tmp))
        for images, size in checks:
            chunk = seg_chunk(len(desc.class_names), size) if seg else 256
            report = check_parity(tmp, model, images, SEG_MIN_AGREEMENT if seg else 1.0, chunk=chunk)
            diff = "labels only" if report.max_abs_diff is None else f"max abs logit diff {report.max_abs_diff:.2e}"
            print(f"parity vs PyTorch on {report.images} {split} images at {size[0]}x{size[1]} (batch "
                  f"{report.batch_sizes}): {diff}, {'pixel' if seg else 'top-1'} argmax agreement "
                  f"{100 * report.agreement:.4f}%")
            if not report.ok(args.tol):
                print(f"error: parity check failed (tolerance {args.tol:g}, agreement >= "
                      f"{100 * report.min_agreement:g}%); nothing written", file=sys.stderr)
                return False
        return True

    if verified_write(args.output, write):
        return 1
    print(f"wrote {args.output} ({os.path.getsize(args.output) / 1e6:.2f} MB, fold {fold}, "
          f"{sum(ops.values())} nodes: {', '.join(f'{k} {v}' for k, v in sorted(ops.items()))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
