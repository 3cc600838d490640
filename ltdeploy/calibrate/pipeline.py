"""What `ltdeploy calibrate` does once its command line is read: find the classifier, cache the splits'
features, fit (or choose with auto), fold into a copy of the graph, check parity and latency, and write it with
its description."""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time

import click
import numpy as np

from ltdeploy.calibrate.auto import candidate_row, choose, comparison_lines
from ltdeploy.calibrate.preprocessing import model_preprocess
from ltdeploy.calibrate.settings import FitSettings, Request
from ltdeploy.errors import LtDeployError
from ltdeploy.metadata import ModelDescription


def run(req: Request) -> dict:
    """Calibrate, check parity, time, write; returns the summary the command prints."""
    from ltdeploy.calibrate import graph_io
    from ltdeploy.calibrate.fit import Calibration
    from ltdeploy.calibrate.head import find_head
    from ltdeploy.calibrate.tasks import job_for
    from ltdeploy.onnx_files import get_description, image_input, set_description

    if os.path.abspath(req.out) == os.path.abspath(req.model):
        raise LtDeployError(f"{req.out}: would overwrite the model; choose another -o")
    model, external = graph_io.read_model(req.model)
    head = find_head(model)
    existing = get_description(model, req.model, required=False)
    if existing is not None and existing.calibration.get("method", "none") != "none":
        raise LtDeployError(f"{req.model} is already calibrated ({existing.calibration['method']}); calibrate the "
                            "uncalibrated model")
    pre = model_preprocess(model, existing, req.preprocess)
    job = job_for(head.task, req.data, head.num_classes, req.classes, existing)
    if req.method not in job.methods:
        raise LtDeployError(f"a {head.task} model calibrates with {', '.join(job.methods)}, not {req.method}")
    select = req.select or next(iter(job.select))
    if select not in job.select:
        raise LtDeployError(f"a {head.task} model is chosen by {', '.join(job.select)}, not --select {select}")
    req = dataclasses.replace(req, select=select)
    settings = dataclasses.replace(req.settings, rho=job.default_rho if req.settings.rho is None else req.settings.rho,
                                   batch_size=req.settings.batch_size or job.default_fit_batch(req.pixels))
    with tempfile.TemporaryDirectory(prefix="ltdeploy-calibrate-") as tmp:
        cache_session = graph_io.session(graph_io.with_outputs(model, [*head.features, head.logits]), tmp, "cache.onnx")
        tr = job.cache(cache_session, head, pre, "train", settings, req.batch, req.pixels)
        va = job.cache(cache_session, head, pre, "val", settings, req.batch, req.pixels)
        classifier = (np.concatenate([p.weight for p in head.parts], 1), sum(p.bias for p in head.parts))
        cal, auto = _calibration(req, settings, job, tr, va, classifier)
        original = Calibration.unchanged(*classifier)
        before, after = job.val_record(original, va), job.val_record(cal, va)
        calibrated = _calibrated_model(model, head, cal)
        desc = ModelDescription(
            task=head.task, class_names=job.names, class_counts=job.counts, group_thresholds=job.thresholds,
            class_ids=job.class_ids, preprocess=pre, input_name=image_input(model).name, output_names=[head.output],
            calibration={"method": cal.method, "form": cal.form, **_summary(cal.info),
                         "feature_tensors": head.features, "logits_tensor": head.logits,
                         "softmax": head.softmax is not None, **({"auto": auto} if auto else {})},
            provenance=_provenance(req, train_samples=len(tr.y), skipped=tr.skipped),
            postprocess={"probabilities": True} if head.softmax and job.probabilities else {})
        set_description(calibrated, desc)
        check = _parity_and_speed(cache_session, model, calibrated, head, cal, job.val_paths(), pre, tmp)
        graph_io.write_model(calibrated, req.out, external)
    table = job.table([("original", before), (cal.method, after)])
    return {"description": desc, "before": before, "after": after, **check, "skipped": tr.skipped, "table": table}


def _calibration(req: Request, settings: FitSettings, job, train, val, classifier) -> tuple:
    """(the calibration, auto's record or None): the asked method fitted, or every auto candidate fitted and
    the best on val kept."""
    from ltdeploy.calibrate.fit import Calibration, fit

    if req.method == "none":
        return Calibration.unchanged(*classifier), None
    if req.method != "auto":
        return fit(req.method, train.as_tuple(), job.counts, classifier, settings, val=val.as_tuple(),
                   mixing=train.mixing), None
    key = job.select[req.select]
    rows, fitted = [], {}
    for method, overrides in job.candidates():
        start = time.perf_counter()
        cal = fit(method, train.as_tuple(), job.counts, classifier, dataclasses.replace(settings, **overrides),
                  val=val.as_tuple(), mixing=train.mixing)
        cal.info.update(overrides)
        row = candidate_row(method, overrides, job.val_record(cal, val), key, round(time.perf_counter() - start, 2))
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


def _provenance(req: Request, **extra) -> dict:
    from ltdeploy import __version__
    from ltdeploy.files import file_sha256

    return {"tool": "ltdeploy calibrate", "ltdeploy": __version__, "source": os.path.basename(req.model),
            "source_sha256": file_sha256(req.model), "data": os.path.abspath(req.data), **extra}


PARITY_TOLERANCE = 1e-4  # on logits relative to their scale (at least 1), and on probabilities
PARITY_BATCHES = (1, 8)
TIMING_RUNS = 30


def _rows(tensor: np.ndarray) -> np.ndarray:
    """A feature or logits tensor as rows: (N, d) as it is; (N, C, H, W) one row per pixel."""
    return tensor.reshape(len(tensor), -1) if tensor.ndim == 2 else \
        tensor.transpose(0, 2, 3, 1).reshape(-1, tensor.shape[1])


def _parity_and_speed(cache_session, original, calibrated, head, cal, val_paths: list[str], pre, tmp: str) -> dict:
    """The calibrated graph's logits tensor (and output) from ONNX Runtime against the calibration applied in
    numpy to the original graph's features and logits, at two batch sizes; then both graphs' median latency
    at batch 1."""
    from ltdeploy.calibrate import graph_io
    from ltdeploy.calibrate.cache import batch_size_of
    from ltdeploy.classify import softmax
    from ltdeploy.image_io import read_image
    from ltdeploy.preprocess import preprocess_image

    checked = graph_io.session(graph_io.with_outputs(calibrated, [head.logits]), tmp, "checked.onnx")
    name = checked.get_inputs()[0].name
    inputs_all = np.stack([preprocess_image(read_image(p), pre) for p in val_paths[:max(PARITY_BATCHES)]])
    worst = 0.0
    for b in PARITY_BATCHES:
        inputs = inputs_all[:batch_size_of(checked, b)]
        out = cache_session.run([*head.features, head.logits], {name: inputs})
        expected = cal.apply(np.concatenate([_rows(f) for f in out[:-1]], 1), _rows(out[-1]))
        got_out, got = checked.run([head.output, head.logits], {name: inputs})
        scale = max(1.0, float(np.abs(expected).max()))
        worst = max(worst, float(np.abs(_rows(got) - expected).max()) / scale)
        if head.softmax is not None and not head.per_pixel:  # the Softmax follows the new logits
            worst = max(worst, float(np.abs(got_out.reshape(expected.shape) - softmax(expected)).max()))
    if worst > PARITY_TOLERANCE:
        raise LtDeployError(f"the calibrated graph differs from the calibration in numpy by {worst:.2e} "
                            f"(tolerance {PARITY_TOLERANCE}); nothing written")
    del checked
    sess, base = graph_io.session(calibrated, tmp, "calibrated.onnx"), graph_io.session(original, tmp, "original.onnx")
    one = inputs_all[:1]
    times: dict[str, list[float]] = {"original": [], "calibrated": []}
    for _ in range(TIMING_RUNS):  # interleaved, so that drift in the machine's speed hits both alike
        for key, session in (("original", base), ("calibrated", sess)):
            start = time.perf_counter()
            session.run(None, {name: one})
            times[key].append(time.perf_counter() - start)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {"parity": worst, "latency_ms": {k: round(1e3 * v, 4) for k, v in med.items()}, "timing_runs": TIMING_RUNS,
            "latency_ratio": round(med["calibrated"] / med["original"], 4)}
