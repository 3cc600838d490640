"""`ltdeploy quantize`: an fp32 ltdeploy ONNX file to a static INT8 (QDQ) one, calibrated on real images."""
from __future__ import annotations

import os
import sys

import click

from ltdeploy.errors import LtDeployError
from ltdeploy.quantize import METHODS, SAMPLINGS, SCOPES, TARGETS


@click.command("quantize")
@click.argument("onnx_file")
@click.option("--output", "-o", required=True, help="INT8 ONNX file to write (QDQ; e.g. model.int8.onnx).")
@click.option("--calib", "calib", required=True,
              help="Dataset folder (its --calib-split is drawn from) or a plain folder of images.")
@click.option("--calib-split", default="train", show_default=True, help="Split of a dataset folder to draw from.")
@click.option("--calib-images", default=64, show_default=True, type=click.IntRange(1),
              help="How many images calibrate the activation ranges.")
@click.option("--calib-sampling", default="balanced", show_default=True, type=click.Choice(SAMPLINGS),
              help="balanced: classes take turns, rarest first; instance: uniformly at random.")
@click.option("--method", default="minmax", show_default=True, type=click.Choice(list(METHODS)),
              help="How activation ranges are read from the calibration images.")
@click.option("--scope", default="features", show_default=True, type=click.Choice(SCOPES),
              help="features: only the feature extractor is int8 (heads, calibration, softmax, NMS stay float); "
                   "all: everything the tool can quantize.")
@click.option("--target", default="cpu", show_default=True, type=click.Choice(TARGETS),
              help="cpu: ONNX Runtime's CPU kernels (uint8 activations, asymmetric); tensorrt: TensorRT's explicit "
                   "quantization (int8, symmetric), what `ltdeploy build` takes.")
@click.option("--full-range", is_flag=True,
              help="cpu: 8-bit weights (default 7: ONNX Runtime's int8 kernels on AVX2 CPUs without VNNI saturate "
                   "with 8); tensorrt always has 8.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the calibration draw.")
def quantize(onnx_file: str, output: str, calib: str, calib_split: str, calib_images: int, calib_sampling: str,
             method: str, scope: str, target: str, full_range: bool, seed: int) -> None:
    """Quantize ONNX_FILE to INT8 for ONNX Runtime on CPU or for TensorRT's explicit quantization."""
    from ltdeploy.quantize.calibration_set import calibration_set
    from ltdeploy.quantize.qdq import load_model, quantize_int8

    try:
        if os.path.abspath(output) == os.path.abspath(onnx_file):
            raise LtDeployError(f"{output}: would overwrite the fp32 model; choose another --output")
        _, desc = load_model(onnx_file)
        paths, record = calibration_set(calib, desc, calib_split, calib_images, calib_sampling, seed)
        click.echo(f"calibrating on {len(paths)} images ({record['sampling']}, {record['source']}) with {method}",
                   err=True)
        precision = quantize_int8(onnx_file, output, paths, record, method, scope, target, full_range)
    except (LtDeployError, ValueError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    size = os.path.getsize(output) / 1e6
    click.echo(f"wrote {output} ({size:.2f} MB, int8 QDQ for {target}, {precision['quantize_nodes']} QuantizeLinear "
               f"nodes, {method}, {len(paths)} calibration images)")
