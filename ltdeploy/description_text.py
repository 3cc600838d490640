"""How `ltdeploy info` writes a model description as text, one line per part."""
from __future__ import annotations

import json

from ltdeploy.metadata import ModelDescription
from ltdeploy.preprocess import PreprocessConfig
from ltdeploy.tasks import task_spec


def _input_shape(pp: PreprocessConfig) -> str:
    h, w = pp.input_size
    return f"1 x 3 x h x w (h, w <= {pp.max_size})" if pp.resize == "fit" else f"N x 3 x {h} x {w}"


def _resize_text(pp: PreprocessConfig) -> str:
    if pp.resize == "fit":
        return f"short side to {pp.resize_short}, long side at most {pp.max_size}, aspect kept"
    return f"short side to {pp.resize_short}, centre crop" if pp.resize == "crop" else "resized to the input size"


def _postprocess_text(post: dict) -> str:
    caps = [f"{post['candidates_per_class']} per class" if post.get("candidates_per_class") else "",
            f"{post['candidates']} per image" if post.get("candidates") else ""]
    cap = " and ".join(c for c in caps if c) or "uncapped"
    text = (f"scores > {post.get('score_threshold')}, candidates before NMS {cap}, per-class NMS at IoU "
            f"{post.get('nms_iou')}, {post.get('detections')} detections")
    return text + ("; masks 28 x 28 per box, pasted at the image's pixels" if post.get("masks") else "")


def description_lines(engine: str, provider: str, desc: ModelDescription, build=None) -> list[str]:
    """The text `info` prints: engine, task and groups, input, outputs, post-processing, calibration, provenance
    (and a plan's profiles, from its BuildInfo)."""
    groups = desc.groups
    pp = desc.preprocess
    top, mid, low = desc.group_names
    unit = task_spec(desc.task).count_unit
    lines = [
        f"engine:        {engine} ({provider})",
        f"task:          {desc.task}, {desc.num_classes} classes "
        f"({top} {groups.count(top)}, {mid} {groups.count(mid)}, {low} {groups.count(low)}; "
        f"{top} > {desc.group_thresholds[0]}, {low} < {desc.group_thresholds[1]} {unit})",
        f"input:         {desc.input_name} {_input_shape(pp)} {pp.color_order}, {_resize_text(pp)} "
        f"({pp.interpolation}), mean {list(pp.mean)}, std {list(pp.std)}",
        f"outputs:       {', '.join(desc.output_names)}",
        *([f"postprocess:   {_postprocess_text(desc.postprocess)}"] if desc.postprocess else []),
        f"calibration:   {json.dumps(desc.calibration)}",
        *([f"chosen:        {auto_choice_text(desc.calibration)}"] if "auto" in desc.calibration else []),
        f"precision:     {_precision_text(desc.precision)}",
        f"provenance:    {json.dumps(desc.provenance)}",
    ]
    if build:
        lines.append("profiles:      " + "; ".join(", ".join(f"{n} {s[0]}..{s[2]}" for n, s in p.items())
                                                   for p in build.profiles))
    return lines


def _precision_text(p: dict) -> str:
    """'fp32', or the INT8 record in a line: format, method, scope and the calibration set."""
    if not p:
        return "fp32"
    cal = p.get("calibration", {})
    target = f" for {p['target']}" if p.get("target") else ""
    return (f"{p.get('weights')} weights / {p.get('activations')} activations{target} ({p.get('format')}, "
            f"{p.get('method')}, scope {p.get('scope')}); calibrated on {cal.get('images')} images, "
            f"{cal.get('sampling')} from {cal.get('source')}")


def auto_choice_text(calibration: dict) -> str:
    """What `--method auto` chose and by how much: 'ncm by val top1 0.8800, +0.0150 over disalign rho=1.2 (13
    candidates)'."""
    a = calibration.get("auto", {})
    over = f", +{a['margin']:.4f} over {a['runner_up']}" if a.get("runner_up") else ""
    noise = a.get("val_noise")
    within = "" if noise is None else f"; val's standard error {noise:.4f}" + (
        ", so the margin is within noise" if a.get("margin") is not None and a["margin"] < noise else "")
    return (f"{a.get('chosen')} by val {a.get('select')} {a.get('val', 0):.4f}{over} ({a.get('candidates')} "
            f"candidates{within})")
