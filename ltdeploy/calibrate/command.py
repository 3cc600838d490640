"""`ltdeploy calibrate MODEL.onnx --data DIR -o OUT.onnx`: fit a long-tail calibration on a classifier that exists
only as ONNX, fold it into the graph and write it with ltdeploy's description, torch-free."""
from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time

import click
import numpy as np

from ltdeploy.calibrate.auto import (
    CLASSIFICATION_SELECT,
    candidate_row,
    choose,
    classification_candidates,
    comparison_lines,
)
from ltdeploy.calibrate.preprocessing import PREPROCESS_FLAGS, model_preprocess
from ltdeploy.calibrate.settings import METHODS, FitSettings
from ltdeploy.errors import LtDeployError
from ltdeploy.evaluation.accuracy import ACCURACY_HEADER, format_accuracy
from ltdeploy.metadata import ModelDescription, default_group_thresholds

CHOICES = ("auto", "none", *METHODS)


@dataclasses.dataclass(frozen=True)
class Request:
    """What the command line asked for."""

    model: str
    data: str
    out: str
    method: str
    select: str
    settings: FitSettings
    preprocess: dict
    classes: str | None
    batch: int


def run(req: Request) -> dict:
    """Calibrate, check parity, time, write; returns the summary the command prints."""
    from ltdeploy.calibrate import graph_io
    from ltdeploy.calibrate.data import class_order, classification_splits
    from ltdeploy.calibrate.fit import Calibration, val_record
    from ltdeploy.calibrate.head import find_head

    if os.path.abspath(req.out) == os.path.abspath(req.model):
        raise LtDeployError(f"{req.out}: would overwrite the model; choose another -o")
    model, external = graph_io.read_model(req.model)
    head = find_head(model)
    if head.task != "classification":
        raise LtDeployError(f"{req.model}: a segmenter (its classifier is a 1x1 Conv); this version calibrates "
                            "classifiers")
    existing = _description(model, req.model)
    pre = model_preprocess(model, existing, req.preprocess)
    train, val = classification_splits(req.data)
    names, to_model = class_order(train.class_names, head.num_classes, req.classes, existing)
    counts = np.bincount(to_model[train.labels], minlength=len(names)).tolist()
    thresholds = default_group_thresholds(counts)
    with tempfile.TemporaryDirectory(prefix="ltdeploy-calibrate-") as tmp:
        from ltdeploy.calibrate.cache import cache_split

        cache_session = graph_io.session(graph_io.with_outputs(model, [*head.features, head.logits]), tmp, "cache.onnx")
        tr = cache_split(cache_session, head, train.paths, to_model[train.labels], pre, req.batch, "train features",
                         skip_bad=True)
        va = cache_split(cache_session, head, val.paths, to_model[val.labels], pre, req.batch, "val features")
        classifier = (np.concatenate([p.weight for p in head.parts], 1), sum(p.bias for p in head.parts))
        cal, auto = _calibration(req, head, tr.as_tuple(), va.as_tuple(), counts, thresholds, classifier)
        before = val_record(Calibration("none", "plain", {"weight": classifier[0], "bias": classifier[1]}),
                            va.as_tuple(), counts, thresholds)
        after = val_record(cal, va.as_tuple(), counts, thresholds)
        calibrated = _calibrated_model(model, head, cal)
        desc = ModelDescription(
            task="classification", class_names=names, class_counts=counts, group_thresholds=thresholds,
            preprocess=pre, input_name=model.graph.input[0].name, output_names=[head.output],
            calibration={"method": cal.method, "form": cal.form, **_summary(cal.info),
                         "feature_tensors": head.features, "logits_tensor": head.logits,
                         "softmax": head.softmax is not None, **({"auto": auto} if auto else {})},
            provenance=_provenance(req, train_images=len(tr.y), skipped=tr.skipped),
            postprocess={"probabilities": True} if head.softmax else {})
        _set_description(calibrated, desc)
        check = _parity_and_speed(cache_session, model, calibrated, head, cal, val.paths, pre, tmp)
        graph_io.write_model(calibrated, req.out, external)
    return {"description": desc, "before": before, "after": after, **check, "skipped": tr.skipped}


def _description(model, path: str) -> ModelDescription | None:
    from ltdeploy.metadata import METADATA_KEY, description_from_metadata

    meta = {p.key: p.value for p in model.metadata_props}
    return description_from_metadata(meta, path) if METADATA_KEY in meta else None


def _calibration(req: Request, head, train, val, counts: list[int], thresholds, classifier) -> tuple:
    """(the calibration, auto's record or None): the asked method fitted, or every auto candidate fitted and
    the best on val kept."""
    from ltdeploy.calibrate.fit import Calibration, fit, val_record

    if req.method == "none":
        return Calibration("none", "plain", {"weight": classifier[0], "bias": classifier[1]}), None
    if req.method != "auto":
        return fit(req.method, train, counts, classifier, req.settings, val=val), None
    key = CLASSIFICATION_SELECT[req.select]
    rows, fitted = [], {}
    for method, overrides in classification_candidates():
        start = time.perf_counter()
        settings = dataclasses.replace(req.settings, **overrides)
        cal = fit(method, train, counts, classifier, settings, val=val)
        cal.info.update(overrides)
        row = candidate_row(method, overrides, val_record(cal, val, counts, thresholds), key,
                            round(time.perf_counter() - start, 2))
        rows.append(row)
        fitted[row["candidate"]] = cal
    chosen, record = choose(rows, req.select, key)
    click.echo("\n".join(comparison_lines(rows, req.select, chosen, record)), err=True)
    return fitted[chosen["candidate"]], record


def _summary(info: dict) -> dict:
    """The fit's settings for the description (the per-epoch log and tau's val table stay out)."""
    return {k: v for k, v in info.items() if k not in ("log", "val_top1_by_tau")}


def _calibrated_model(model, head, cal):
    import copy

    from ltdeploy.calibrate.fold import fold_into

    out = copy.deepcopy(model)
    if cal.method != "none":
        fold_into(out, head, cal)
    return out


def _set_description(model, desc: ModelDescription) -> None:
    from ltdeploy.metadata import METADATA_KEY

    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = desc.to_json()
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, desc.to_json()


def _provenance(req: Request, **extra) -> dict:
    from ltdeploy import __version__
    from ltdeploy.files import file_sha256

    return {"tool": "ltdeploy calibrate", "ltdeploy": __version__, "source": os.path.basename(req.model),
            "source_sha256": file_sha256(req.model), "data": os.path.abspath(req.data), **extra}


PARITY_TOLERANCE = 1e-4  # on probabilities; logits relative to their scale
PARITY_BATCHES = (1, 8)
TIMING_RUNS = 30


def _parity_and_speed(cache_session, original, calibrated, head, cal, val_paths: list[str], pre, tmp: str) -> dict:
    """ONNX Runtime on the calibrated graph against the calibration applied in numpy to the original graph's
    features and logits, at two batch sizes; then both graphs' median latency at batch 1."""
    from ltdeploy.calibrate import graph_io
    from ltdeploy.calibrate.cache import batch_size_of
    from ltdeploy.classify import softmax
    from ltdeploy.image_io import read_image
    from ltdeploy.preprocess import preprocess_image

    sess = graph_io.session(calibrated, tmp, "calibrated.onnx")
    base = graph_io.session(original, tmp, "original.onnx")
    name = sess.get_inputs()[0].name
    inputs_all = np.stack([preprocess_image(read_image(p), pre) for p in val_paths[:max(PARITY_BATCHES)]])
    worst = 0.0
    for b in PARITY_BATCHES:
        inputs = inputs_all[:batch_size_of(sess, b)]
        out = cache_session.run([*head.features, head.logits], {name: inputs})
        x = np.concatenate([f.reshape(len(inputs), -1) for f in out[:-1]], 1)
        z = out[-1].reshape(len(inputs), -1)
        expected = cal.apply(x, z)
        if head.softmax is not None:
            expected = softmax(expected)
        got = sess.run([head.output], {name: inputs})[0].reshape(expected.shape)
        scale = 1.0 if head.softmax is not None else max(1.0, float(np.abs(expected).max()))
        worst = max(worst, float(np.abs(got - expected).max()) / scale)
    if worst > PARITY_TOLERANCE:
        raise LtDeployError(f"the calibrated graph differs from the calibration in numpy by {worst:.2e} "
                            f"(tolerance {PARITY_TOLERANCE}); nothing written")
    one = inputs_all[:1]
    times: dict[str, list[float]] = {"original": [], "calibrated": []}
    for _ in range(TIMING_RUNS):  # interleaved, so that drift in the machine's speed hits both alike
        for key, s in (("original", base), ("calibrated", sess)):
            start = time.perf_counter()
            s.run(None, {name: one})
            times[key].append(time.perf_counter() - start)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {"parity": worst, "latency_ms": {k: round(1e3 * v, 4) for k, v in med.items()},
            "latency_ratio": round(med["calibrated"] / med["original"], 4)}


def print_summary(req: Request, result: dict) -> None:
    """The before / after table on val, parity and latency."""
    desc: ModelDescription = result["description"]
    cal = desc.calibration
    lines = [f"val: {ACCURACY_HEADER}", f"val: {format_accuracy('original', result['before'])}",
             f"val: {format_accuracy(cal['method'], result['after'])}"]
    if result["skipped"]:
        lines.append(f"skipped {result['skipped']} unreadable training images")
    lines.append(f"parity: max |ONNX Runtime - numpy| {result['parity']:.2e}; latency calibrated / original "
                 f"{result['latency_ratio']:.3f} (median of {TIMING_RUNS} at batch 1: "
                 f"{result['latency_ms']['calibrated']:.3f} / {result['latency_ms']['original']:.3f} ms)")
    lines.append(f"wrote {req.out}: {desc.num_classes} classes, {cal['method']} ({cal['form']} form) on "
                 f"{', '.join(cal['feature_tensors'])}")
    click.echo("\n".join(lines))


@click.command("calibrate")
@click.argument("model")
@click.option("--data", required=True, help="Labelled dataset folder (train/ and val/ splits, as `ltdeploy val` "
                                            "reads them): the calibration fits on train, auto and tau-norm choose "
                                            "on val.")
@click.option("--output", "-o", required=True, help="Calibrated ONNX file to write.")
@click.option("--method", default="disalign", show_default=True, type=click.Choice(CHOICES),
              help="auto: every train.py stage-2 candidate, the best on val kept; none: the description only.")
@click.option("--select", default="top1", show_default=True, type=click.Choice(list(CLASSIFICATION_SELECT)),
              help="--method auto: the val score that chooses.")
@click.option("--classes", help="The model's class names, one a line, in its output order (default: the data's "
                                "sorted classes, or the model's description).")
@click.option("--rho", default=1.2, show_default=True, type=float, help="G-RW scale.")
@click.option("--tau", default=1.0, show_default=True, type=float, help="logit-adjust's tau.")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(1))
@click.option("--min-steps", default=1000, show_default=True, type=click.IntRange(0),
              help="At least this many SGD steps (small sets get more epochs).")
@click.option("--lr", default=0.1, show_default=True, type=float)
@click.option("--wd", default=5e-4, show_default=True, type=float)
@click.option("--fit-batch", default=64, show_default=True, type=click.IntRange(1), help="SGD batch size.")
@click.option("--batch", default=32, show_default=True, type=click.IntRange(1), help="Images per ONNX Runtime run.")
@click.option("--seed", default=0, show_default=True, type=int)
@PREPROCESS_FLAGS
def calibrate(model: str, data: str, output: str, method: str, select: str, classes: str | None, rho: float,
              tau: float, epochs: int, min_steps: int, lr: float, wd: float, fit_batch: int, batch: int, seed: int,
              **preprocess) -> None:
    """Fold a long-tail calibration into MODEL (a classifier's ONNX file) and write it with its description."""
    settings = FitSettings(epochs=epochs, batch_size=fit_batch, lr=lr, wd=wd, rho=rho, tau=tau, min_steps=min_steps,
                           seed=seed)
    req = Request(model, data, output, method, select, settings, preprocess, classes, batch)
    try:
        result = run(req)
    except (LtDeployError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    print_summary(req, result)
