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

import numpy as np

from export.onnx_export import embed_description, export_description, export_module, op_counts, verified_write
from export.parity import check_parity
from ltdeploy.errors import LtDeployError
from ltdeploy.image_io import read_image
from ltdeploy.preprocess import PreprocessConfig, preprocess_batch
from ltdeploy.tasks import task_spec
from training.checkpoints import read_checkpoint
from training.core.checkpoint import Checkpoint, file_sha256
from training.segmentation.model import ArgmaxLabels
from training.tasks import get_task

SEG_MIN_AGREEMENT = 0.9999  # pixels whose argmax must match (docs/method.md §6; ties at upsampled borders)


def verification_batch(paths: list[str], count: int, cfg: PreprocessConfig) -> np.ndarray:
    """The first `count` images (0: all) of a split's files, preprocessed as the model expects."""
    return preprocess_batch([read_image(p) for p in (paths[:count] if count > 0 else paths)], cfg)


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


def export_tensor(args: argparse.Namespace, ck: Checkpoint, module, fold: str, outputs: list[str], paths: list[str],
                  split: str, dense: bool) -> int:
    """Classification / segmentation: export at the model's input size (any size when dense), check the
    logits against PyTorch (dense: at a second size too), move into place."""
    desc, model = ck.description, ck.model
    checks = [(verification_batch(paths, args.verify_images, desc.preprocess), desc.preprocess.input_size)]
    if dense:
        other = second_size(desc.preprocess)
        checks.append((verification_batch(paths, 8, other), other.input_size))
    ops: dict[str, int] = {}

    def write(tmp: str) -> bool:
        export_module(module, tmp, desc.preprocess.input_size, desc.input_name, outputs, dynamic_size=dense)
        embed_description(tmp, export_description(desc, fold, file_sha256(args.checkpoint), outputs))
        ops.update(op_counts(tmp))
        for images, size in checks:
            chunk = seg_chunk(len(desc.class_names), size) if dense else 256
            report = check_parity(tmp, model, images, SEG_MIN_AGREEMENT if dense else 1.0, chunk=chunk)
            diff = "labels only" if report.max_abs_diff is None else f"max abs logit diff {report.max_abs_diff:.2e}"
            print(f"parity vs PyTorch on {report.images} {split} images at {size[0]}x{size[1]} (batch "
                  f"{report.batch_sizes}): {diff}, {'pixel' if dense else 'top-1'} argmax agreement "
                  f"{100 * report.agreement:.4f}%")
            if not report.ok(args.tol):
                print(f"error: parity check failed (tolerance {report.allowed(args.tol):.3g}, agreement >= "
                      f"{100 * report.min_agreement:g}%); nothing written", file=sys.stderr)
                return False
        return True

    if verified_write(args.output, write):
        return 1
    print(f"wrote {args.output} ({os.path.getsize(args.output) / 1e6:.2f} MB, fold {fold}, "
          f"{sum(ops.values())} nodes: {', '.join(f'{k} {v}' for k, v in sorted(ops.items()))})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The export options."""
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
    p.add_argument("--tol", type=float, default=1e-4,
                   help="max abs logit difference allowed, relative to the largest |logit| where that is above 1")
    p.add_argument("--candidates-per-class", type=int, default=None,
                   help="detection: per-class cap on candidates before NMS (default: the checkpoint's; 0: none)")
    p.add_argument("--candidates", type=int, default=None,
                   help="detection: cap on (box, class) candidates per image before NMS (default: the "
                        "checkpoint's, 3840; 2000 for TensorRT on SM 5.3 / 6.2; 0: none, not buildable)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Export, verify, and move into place only when parity holds."""
    args = build_parser().parse_args(argv)
    try:
        ck = read_checkpoint(args.checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    desc, model = ck.description, ck.model
    task = get_task(desc.task)
    if args.argmax and not task.dense:
        print("error: --argmax is for segmentation models", file=sys.stderr)
        return 2
    fold = "none" if args.no_fold else ("plain" if model.calibrator is None else args.fold_mode)
    module = model if args.no_fold else model.folded(args.fold_mode)
    outputs = ["labels"] if args.argmax else desc.output_names
    if args.argmax:
        module = ArgmaxLabels(module, desc.num_classes)
    split = args.split or task.eval_split
    try:
        paths = task.export_images(args.data, split, desc.provenance)
    except (LtDeployError, FileNotFoundError, ValueError) as exc:
        print(f"error: no dataset to verify on ({exc}); pass --data DIR", file=sys.stderr)
        return 2
    if task_spec(desc.task).one_image_per_call:
        from export.det_export import export_detection  # torchvision's detection stack: seconds to import

        return export_detection(args, ck, module, fold, paths, split)
    return export_tensor(args, ck, module, fold, outputs, paths, split, task.dense)


if __name__ == "__main__":
    sys.exit(main())
