"""`ltdeploy calibrate MODEL.onnx --data DIR -o OUT.onnx`: fit a long-tail calibration on a classifier that exists
only as ONNX, fold it into the graph and write it with ltdeploy's description, torch-free. This module is the
command line alone (it loads with every `ltdeploy` command); `pipeline` does the work."""
from __future__ import annotations

import sys

import click

from ltdeploy.calibrate.auto import CLASSIFICATION_SELECT, SEGMENTATION_SELECT
from ltdeploy.calibrate.preprocessing import PREPROCESS_FLAGS
from ltdeploy.calibrate.settings import METHODS, FitSettings, Request
from ltdeploy.errors import LtDeployError

CHOICES = ("auto", "none", *METHODS)


def print_summary(req: Request, result: dict) -> None:
    """The before / after table on val, parity and latency."""
    desc = result["description"]
    cal = desc.calibration
    lines = list(result["table"])
    if result["skipped"]:
        lines.append(f"skipped {result['skipped']} unreadable training images")
    lines.append(f"parity: max |ONNX Runtime - numpy| {result['parity']:.2e}; latency calibrated / original "
                 f"{result['latency_ratio']:.3f} (median of {result['timing_runs']} at batch 1: "
                 f"{result['latency_ms']['calibrated']:.3f} / {result['latency_ms']['original']:.3f} ms)")
    lines.append(f"wrote {req.out}: {desc.task}, {desc.num_classes} classes, {cal['method']} ({cal['form']} form) "
                 f"on {', '.join(cal['feature_tensors'])}")
    click.echo("\n".join(lines))


@click.command("calibrate")
@click.argument("model")
@click.option("--data", required=True, help="Labelled dataset folder with train and val splits, as `ltdeploy val` "
                                            "reads it (classification or segmentation): the calibration fits on "
                                            "train; auto and tau-norm choose on val.")
@click.option("--output", "-o", required=True, help="Calibrated ONNX file to write.")
@click.option("--method", default="disalign", show_default=True, type=click.Choice(CHOICES),
              help="auto: every train.py stage-2 candidate, the best on val kept; none: the description only "
                   "(so that `ltdeploy val` can score the original). Segmenters: auto, none, disalign*.")
@click.option("--select", type=click.Choice([*CLASSIFICATION_SELECT, *SEGMENTATION_SELECT]),
              help="--method auto: the val score that chooses (default top1; segmenters miou).")
@click.option("--classes", help="The model's class names, one a line, in its output order (default: the model's "
                                "description, else the data's classes in their order).")
@click.option("--rho", type=float, help="G-RW scale (default 1.2; segmenters 0.3).")
@click.option("--tau", default=1.0, show_default=True, type=float, help="logit-adjust's tau.")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(1))
@click.option("--min-steps", default=1000, show_default=True, type=click.IntRange(0),
              help="At least this many SGD steps (small sets get more epochs).")
@click.option("--lr", default=0.1, show_default=True, type=float)
@click.option("--wd", default=5e-4, show_default=True, type=float)
@click.option("--fit-batch", type=click.IntRange(1), help="SGD batch (default 64; segmenters 16 images' pixels).")
@click.option("--batch", default=32, show_default=True, type=click.IntRange(1), help="Images per ONNX Runtime run.")
@click.option("--pixels", default=512, show_default=True, type=click.IntRange(1),
              help="Segmenters: labelled pixels drawn from each image at the model input's size.")
@click.option("--seed", default=0, show_default=True, type=int)
@PREPROCESS_FLAGS
def calibrate(model: str, data: str, output: str, method: str, select: str | None, classes: str | None,
              rho: float | None, tau: float, epochs: int, min_steps: int, lr: float, wd: float, fit_batch: int | None,
              batch: int, pixels: int, seed: int, **preprocess) -> None:
    """Fold a long-tail calibration into MODEL (a classifier's or segmenter's ONNX file) and write it with its
    description, torch-free."""
    settings = FitSettings(epochs=epochs, batch_size=fit_batch or 0, lr=lr, wd=wd, rho=rho, tau=tau,
                           min_steps=min_steps, seed=seed)
    req = Request(model, data, output, method, select, settings, preprocess, classes, batch, pixels)
    from ltdeploy.calibrate.pipeline import run

    try:
        result = run(req)
    except (LtDeployError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    print_summary(req, result)
