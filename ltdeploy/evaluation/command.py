"""`ltdeploy val`: deployed engines scored on a dataset split, side by side, without torch."""
from __future__ import annotations

import os
import sys

import click

from ltdeploy.errors import LtDeployError

DEVICES = click.Choice(["auto", "cpu", "cuda", "tensorrt"])


def score_engines(engines: list[str], data: str, split: str | None, device: str) -> list[tuple[str, object]]:
    """(name, Scores) for each engine on the same split; every engine must be of one task and class list."""
    from ltdeploy.predictor import Predictor

    runs = []
    first = None
    for path in engines:
        probe = Predictor(path, device=device)
        desc = probe.description
        if first is not None and (desc.task, desc.class_names) != (first.task, first.class_names):
            raise ValueError(f"{path}: a {desc.task} model with {desc.num_classes} classes, but {engines[0]} is a "
                             f"{first.task} model with {first.num_classes}; val compares engines of one model")
        first = first or desc
        scores = score_backend(probe.backend, data, split)
        runs.append((_unique_name(path, [n for n, _ in runs]), scores))
        click.echo(f"scored {path} ({scores.images} images)", err=True)
    return runs


def score_backend(backend, data: str, split: str | None):
    """The task's Scores of one opened engine on `split` (default: the task's)."""
    from ltdeploy.predictor import Predictor
    from ltdeploy.tasks import evaluation_module

    module = evaluation_module(backend.description.task)
    predictor = Predictor(backend, **getattr(module, "PREDICTOR_OPTIONS", {}))
    return module.evaluate(predictor, data, split or module.DEFAULT_SPLIT)


def _unique_name(path: str, taken: list[str]) -> str:
    name = os.path.basename(path)
    return name if name not in taken else path


@click.command("val")
@click.option("--engine", "-e", "engines", multiple=True, required=True,
              help="Engine (.onnx, or a TensorRT plan where TensorRT runs); repeat to compare, the first is the "
                   "reference.")
@click.option("--data", required=True, help="Dataset folder as downloaded (list format, ADE20K / seg-lt, LVIS / "
                                            "COCO / det-lt).")
@click.option("--split", help="Split to score (default: test for classification lists, val otherwise).")
@click.option("--json", "json_out", help="Write every score, per class and per engine, to this JSON file.")
@click.option("--csv", "csv_out", help="Write the per-class table (value and difference to the first) as CSV.")
@click.option("--plots", "plots_dir", help="Folder for the per-class change against training count (PNG).")
@click.option("--device", default="auto", show_default=True, type=DEVICES)
def val(engines: tuple[str, ...], data: str, split: str | None, json_out: str | None, csv_out: str | None,
        plots_dir: str | None, device: str) -> None:
    """Score engines on a labelled split: the long-tail groups (few-shot top-1, tail mIoU, APr ...) side by side."""
    from ltdeploy.evaluation import report
    from ltdeploy.files import write_json

    try:
        runs = score_engines(list(engines), data, split, device)
        base = runs[0][1]
        click.echo(f"{base.split}: {base.images} images, {base.description.num_classes} classes "
                   f"({', '.join(base.description.group_names)} by training count)")
        click.echo(report.table(runs))
        if json_out:
            write_json(json_out, report.record(data, runs))
        if csv_out:
            report.write_csv(csv_out, runs)
        if plots_dir:
            from ltdeploy.evaluation.plots import per_class_change
            click.echo(f"wrote {per_class_change(runs, plots_dir)}")
    except (LtDeployError, ValueError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
