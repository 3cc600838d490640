"""The `ltdeploy` command line: predict and info. Heavy imports stay inside the commands."""
from __future__ import annotations

import json
import sys

import click

from ltdeploy.errors import LtDeployError

DEVICES = click.Choice(["cpu", "cuda"])


def _fail(exc: LtDeployError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ltdeploy")
def cli() -> None:
    """Run long-tail-calibrated models exported by ltdeploy (ONNX Runtime or TensorRT)."""


@cli.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--engine", "-e", required=True, help="Engine file: .onnx (ONNX Runtime) or .trt/.engine/.plan.")
@click.option("--topk", "-k", default=5, show_default=True, type=click.IntRange(1),
              help="Classes per image (segmentation: classes shown by pixel share).")
@click.option("--batch-size", "-b", default=16, show_default=True, type=click.IntRange(1))
@click.option("--device", default="cpu", show_default=True, type=DEVICES)
@click.option("--out", "-o", "out_dir", default="predictions", show_default=True,
              help="Segmentation: NAME_overlay.png and NAME_labels.png; detection: NAME_det.png (image size).")
@click.option("--no-save", is_flag=True, help="Segmentation / detection: print the summary only, write no images.")
@click.option("--score-threshold", default=0.25, show_default=True, type=click.FloatRange(0, 1),
              help="Detection: keep detections scoring at least this.")
@click.option("--max-detections", default=100, show_default=True, type=click.IntRange(1),
              help="Detection: at most this many per image, best first.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document instead of lines (detection: COCO results format per image).")
def predict(images: tuple[str, ...], engine: str, topk: int, batch_size: int, device: str, out_dir: str,
            no_save: bool, score_threshold: float, max_detections: int, as_json: bool) -> None:
    """Classify, segment or detect in IMAGES (files or directories), as the engine's task says.

    Exit 1 if any image failed, 2 if nothing could run.
    """
    from ltdeploy.image_io import expand_sources
    from ltdeploy.predictor import Predictor
    from ltdeploy.results import Failure

    try:
        paths = expand_sources(list(images))
        predictor = Predictor(engine, device=device, batch_size=batch_size, save_dir=None if no_save else out_dir,
                              score_threshold=score_threshold, max_detections=max_detections)
        outcomes = []
        for res in predictor.predict(paths, k=topk):
            outcomes.append(res)
            if isinstance(res, Failure):
                click.echo(f"error: {res.error}", err=True)
            elif not as_json:
                click.echo(res.summary() if predictor.description.task == "classification" else res.summary(topk))
    except LtDeployError as exc:
        _fail(exc)
    failures = [r for r in outcomes if isinstance(r, Failure)]
    if as_json:
        click.echo(json.dumps({"engine": engine, "provider": predictor.backend.provider,
                               "results": [r.to_dict() for r in outcomes if not isinstance(r, Failure)],
                               "failures": [f.to_dict() for f in failures]}, indent=1))
    if failures:
        click.echo(f"error: {len(failures)} of {len(outcomes)} images failed", err=True)
        sys.exit(1)


@cli.command()
@click.option("--engine", "-e", required=True, help="Engine file to describe.")
@click.option("--device", default="cpu", show_default=True, type=DEVICES)
@click.option("--json", "as_json", is_flag=True, help="Print the full description as JSON.")
def info(engine: str, device: str, as_json: bool) -> None:
    """Describe an engine: task, classes, preprocessing, calibration, provenance."""
    from ltdeploy.backends import load_backend
    from ltdeploy.metadata import COUNT_UNITS

    try:
        backend = load_backend(engine, device=device)
    except LtDeployError as exc:
        _fail(exc)
    desc = backend.description
    if as_json:
        click.echo(json.dumps({"engine": engine, "provider": backend.provider, **desc.to_dict()}, indent=1))
        return
    groups = desc.groups
    pp = desc.preprocess
    top, mid, low = desc.group_names
    unit = COUNT_UNITS[desc.task]
    lines = [
        f"engine:        {engine} ({backend.provider})",
        f"task:          {desc.task}, {desc.num_classes} classes "
        f"({top} {groups.count(top)}, {mid} {groups.count(mid)}, {low} {groups.count(low)}; "
        f"{top} > {desc.group_thresholds[0]}, {low} < {desc.group_thresholds[1]} {unit})",
        f"input:         {desc.input_name} {'1' if desc.task == 'detection' else 'N'} x 3 x {pp.input_size[0]} x "
        f"{pp.input_size[1]} {pp.color_order}, "
        f"resize short side {pp.resize_short or 'none'} ({pp.interpolation}), mean {list(pp.mean)}, "
        f"std {list(pp.std)}",
        f"outputs:       {', '.join(desc.output_names)}",
        f"calibration:   {json.dumps(desc.calibration)}",
        f"provenance:    {json.dumps(desc.provenance)}",
    ]
    click.echo("\n".join(lines))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="ltdeploy")
