"""The `ltdeploy` command line: predict, info, build, export-triton, quantize, val and calibrate. Heavy imports stay inside
the commands."""
from __future__ import annotations

import json
import sys

import click

from ltdeploy.calibrate.command import calibrate
from ltdeploy.errors import LtDeployError
from ltdeploy.evaluation.command import val
from ltdeploy.image_header import DEFAULT_MAX_PIXELS
from ltdeploy.quantize.command import quantize

PROGRESS_FROM = 32  # images; fewer are done before a bar would say anything

DEVICES = click.Choice(["auto", "cpu", "cuda", "tensorrt"])
DEVICE_HELP = ("auto: .onnx on the CPU, plans on GPU 0; cpu / cuda / tensorrt: ONNX Runtime's CPU, CUDA or "
               "TensorRT provider (checked, never a silent fallback); cuda for a plan: TensorRT.")


def _fail(exc: LtDeployError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(2)


class _Progress:
    """A progress bar on stderr (drawn by click where stderr is a terminal) for runs of PROGRESS_FROM images or
    more; `echo` puts a message on a line of its own."""

    def __init__(self, total: int) -> None:
        self.bar = click.progressbar(length=total, label="predict", file=sys.stderr, show_pos=True,
                                     show_eta=True) if total >= PROGRESS_FROM else None

    def __enter__(self) -> "_Progress":
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def update(self, n: int) -> None:
        """Advance by n images."""
        if self.bar is not None:
            self.bar.update(n)

    def echo(self, message: str) -> None:
        """A line on stderr (after a line break where the bar is drawn)."""
        drawn = self.bar is not None and not self.bar.is_hidden
        click.echo(("\n" if drawn else "") + message, err=True)


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
@click.option("--device", default="auto", show_default=True, type=DEVICES, help=DEVICE_HELP)
@click.option("--out", "-o", "out_dir", default="predictions", show_default=True,
              help="Segmentation: NAME_overlay.png and NAME_labels.png; detection: NAME_det.png (image size). The "
                   "inputs' folders are mirrored below their common folder, so same-named inputs never collide.")
@click.option("--no-save", is_flag=True, help="Segmentation / detection: print the summary only, write no images.")
@click.option("--score-threshold", default=0.25, show_default=True, type=click.FloatRange(0, 1),
              help="Detection: keep detections scoring at least this.")
@click.option("--max-detections", default=100, show_default=True, type=click.IntRange(1),
              help="Detection: at most this many per image, best first.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document instead of lines (detection: COCO results format per image).")
@click.option("--max-pixels", default=DEFAULT_MAX_PIXELS, show_default=True, type=click.IntRange(0),
              envvar="LTDEPLOY_MAX_PIXELS", help="Refuse images larger than this before decoding them "
                                                  "(decompression bombs); 0: no limit. Env: LTDEPLOY_MAX_PIXELS.")
def predict(images: tuple[str, ...], engine: str, topk: int, batch_size: int, device: str, out_dir: str,
            no_save: bool, score_threshold: float, max_detections: int, as_json: bool, max_pixels: int) -> None:
    """Classify, segment or detect in IMAGES (files or directories, searched recursively), as the engine's
    task says. Many images show a progress bar on stderr; stdout carries only the results.

    Exit 1 if any image failed, 2 if nothing could run.
    """
    from ltdeploy.image_io import expand_sources
    from ltdeploy.outputs import output_stems
    from ltdeploy.predictor import Predictor
    from ltdeploy.results import Failure

    try:
        paths = expand_sources(list(images))
        names = {} if no_save else output_stems(paths, "")
        predictor = Predictor(engine, device=device, batch_size=batch_size, score_threshold=score_threshold, max_detections=max_detections,
                              max_pixels=max_pixels)
        outcomes = []
        with _Progress(len(paths)) as bar:
            for res in predictor.predict(paths, k=topk):
                outcomes.append(res)
                bar.update(1)
                if isinstance(res, Failure):
                    bar.echo(f"error: {res.error}")
                    continue
                if not no_save:
                    res.save(out_dir, names[res.path])
                if not as_json:
                    click.echo(res.summary(topk))
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
@click.option("--device", default="auto", show_default=True, type=DEVICES, help=DEVICE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the full description as JSON.")
def info(engine: str, device: str, as_json: bool) -> None:
    """Describe an engine: task, classes, preprocessing, calibration, provenance (plans: and how they were built;
    read from the plan header and <plan>.json, so no TensorRT or GPU is needed)."""
    import os
    from dataclasses import asdict

    from ltdeploy.backends import SUFFIXES, load_backend
    from ltdeploy.description_text import description_lines

    build = None
    try:
        if SUFFIXES.get(os.path.splitext(engine)[1].lower()) == "tensorrt" and device == "auto":
            from ltdeploy.gpu.plan import read_plan_description, read_plan_header
            header = read_plan_header(engine)
            desc, build = read_plan_description(engine)
            provider = (f"TensorRT {header.version_string} plan, {build.precision}, built on {build.gpu_name} "
                        f"(compute capability {build.compute_capability}); not loaded")
        else:
            backend = load_backend(engine, device=device)
            desc, provider = backend.description, backend.provider
    except LtDeployError as exc:
        _fail(exc)
    if as_json:
        extra = {"build": asdict(build)} if build else {}
        click.echo(json.dumps({"engine": engine, "provider": provider, **desc.to_dict(), **extra}, indent=1))
        return
    lines = description_lines(engine, provider, desc, build)
    click.echo("\n".join(lines))


@cli.command()
@click.argument("onnx_file")
@click.option("--output", "-o", required=True,
              help="Plan to write (.trt/.engine/.plan; its description goes to <plan>.json), or an .onnx file: "
                   "then only the fp16 conversion runs (no TensorRT needed).")
@click.option("--fp16", is_flag=True, help="Feature extractor in fp16 (put into the ONNX first); heads, sigmoid, "
                                            "softmax and the calibration stay fp32.")
@click.option("--min-batch", type=click.IntRange(1), help="Smallest batch of the profile (default 1).")
@click.option("--opt-batch", type=click.IntRange(1), help="Batch TensorRT tunes for (default 8).")
@click.option("--max-batch", type=click.IntRange(1), help="Largest batch of the profile (default 32).")
@click.option("--batch-range", multiple=True, metavar="MIN:OPT:MAX",
              help="One more optimization profile per use (instead of --min/--opt/--max-batch).")
@click.option("--workspace", default=4.0, show_default=True, type=click.FloatRange(0.05),
              help="Builder workspace in GiB.")
@click.option("--gpu", default=0, show_default=True, type=click.IntRange(0), help="GPU to build for.")
def build(onnx_file: str, output: str, fp16: bool, min_batch: int | None, opt_batch: int | None,
          max_batch: int | None, batch_range: tuple[str, ...], workspace: float, gpu: int) -> None:
    """Build a TensorRT plan (TensorRT 10 or 11) from an ONNX file exported by ltdeploy."""
    import os

    from ltdeploy.backends import SUFFIXES

    try:
        suffix = os.path.splitext(output)[1].lower()
        if suffix == ".onnx":
            if not fp16:
                raise LtDeployError("an .onnx output is only for the fp16 conversion: add --fp16")
            from ltdeploy.gpu.fp16 import convert_to_fp16
            counts = convert_to_fp16(onnx_file, output)
            click.echo(f"wrote {output}: {counts['fp16_nodes']} of {counts['nodes']} nodes in fp16 (feature "
                       f"extractor), {counts['casts']} casts; heads, calibration and post-processing fp32")
            return
        if SUFFIXES.get(suffix) != "tensorrt":
            raise LtDeployError(f"{output}: a plan is written as .trt, .engine or .plan")
        from ltdeploy.gpu.builder import BatchRange, build_plan

        ranges = [BatchRange.parse(r) for r in batch_range]
        if min_batch or opt_batch or max_batch or not ranges:
            hi = max_batch or max(32, opt_batch or 0, min_batch or 0)
            ranges.insert(0, BatchRange(min_batch or 1, opt_batch or min(8, hi), hi))
        info = build_plan(onnx_file, output, fp16=fp16, ranges=ranges, workspace_gib=workspace, gpu_index=gpu)
    except LtDeployError as exc:
        _fail(exc)
    profiles = "; ".join(", ".join(f"{n} {s[0]}..{s[2]}" for n, s in p.items()) for p in info.profiles)
    click.echo(f"wrote {output} ({info.precision}, TensorRT {info.tensorrt_version}, {info.gpu_name} "
               f"sm_{info.compute_capability.replace('.', '')}; profiles: {profiles}) and {output}.json")


@cli.command("export-triton")
@click.option("--engine", "-e", required=True, help="Engine to serve: .onnx, or a plan with its .json beside it.")
@click.option("--repo", "-r", required=True, help="Triton model repository folder (created if missing).")
@click.option("--name", help="Model name clients call (default: the engine's file name).")
@click.option("--max-batch", default=8, show_default=True, type=click.IntRange(1),
              help="Triton max_batch_size (a plan's profile must reach it).")
@click.option("--instances", default=1, show_default=True, type=click.IntRange(1), help="Instances per model.")
@click.option("--layout", default="native", show_default=True, type=click.Choice(["native", "python"]),
              help="native: engine on Triton's onnxruntime / tensorrt backend plus a Python pre/post model; "
                   "python: one Python-backend model running the engine with ltdeploy.")
@click.option("--kind", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "gpu"]),
              help="Instance kind of the engine (auto: GPU for plans, CPU for ONNX).")
@click.option("--topk", default=5, show_default=True, type=click.IntRange(1))
@click.option("--score-threshold", default=0.25, show_default=True, type=click.FloatRange(0, 1))
@click.option("--max-detections", default=100, show_default=True, type=click.IntRange(1))
@click.option("--overwrite", is_flag=True, help="Replace models of the same name in the repository.")
def export_triton(engine: str, repo: str, name: str | None, max_batch: int, instances: int, layout: str, kind: str,
                  topk: int, score_threshold: float, max_detections: int, overwrite: bool) -> None:
    """Write a Triton model repository for an engine: clients send encoded images, get ltdeploy's JSON."""
    from ltdeploy.triton.repository import write_repository

    try:
        models = write_repository(engine, repo, name=name, max_batch=max_batch, instances=instances, layout=layout,
                                  gpu=None if kind == "auto" else kind == "gpu", topk=topk,
                                  score_threshold=score_threshold, max_detections=max_detections,
                                  overwrite=overwrite)
    except LtDeployError as exc:
        _fail(exc)
    click.echo(f"wrote {', '.join(models)} to {repo}; clients call {models[-1]!r} with IMAGE (encoded bytes) "
               f"and read RESULT (JSON)")


cli.add_command(quantize)
cli.add_command(val)
cli.add_command(calibrate)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="ltdeploy")
