"""The preprocessing a calibrated graph records: the model's own ltdeploy description when it has one, else the
command line's flags, with NCHW or NHWC read from the input's shape. A value neither gives is an error, never an
ImageNet default: the graph will be fed exactly what its description says."""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ltdeploy.errors import LtDeployError

if TYPE_CHECKING:  # the command line loads with every `ltdeploy` command: no OpenCV at import
    from ltdeploy.metadata import ModelDescription
    from ltdeploy.preprocess import PreprocessConfig


def PREPROCESS_FLAGS(command):
    """The preprocessing options of `ltdeploy calibrate` (every one without a default)."""
    options = [
        click.option("--input-size", type=click.IntRange(1), help="Model input side (square); read from the "
                                                                   "input's shape when it is fixed there."),
        click.option("--resize-short", type=click.IntRange(0),
                     help="Short side before the centre crop (0: resize straight to the input size)."),
        click.option("--interpolation", help="nearest, bilinear, bicubic or area (checked by the preprocessing)."),
        click.option("--mean", type=float, nargs=3, help="Per-channel mean on the 0..1 scale, R G B."),
        click.option("--std", type=float, nargs=3, help="Per-channel std on the 0..1 scale, R G B."),
        click.option("--color-order", type=click.Choice(["RGB", "BGR"]), help="Channel order the model takes "
                                                                               "(default RGB)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def input_layout(model) -> tuple[str, tuple[int | None, int | None]]:
    """(NCHW or NHWC, the input's (height, width) where fixed) from the graph's first input."""
    from ltdeploy.onnx_files import image_input

    image = image_input(model)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in image.type.tensor_type.shape.dim]
    name = image.name
    if len(dims) != 4:
        raise LtDeployError(f"the input {name!r} has {len(dims)} axes; an image model takes 4 (NCHW or NHWC)")
    if dims[1] == 3 and dims[3] != 3:
        return "NCHW", (dims[2], dims[3])
    if dims[3] == 3 and dims[1] != 3:
        return "NHWC", (dims[1], dims[2])
    raise LtDeployError(f"the input {name!r} has shape {dims}: no single axis of 3 channels tells NCHW from NHWC")


def model_preprocess(model, existing: ModelDescription | None, flags: dict) -> PreprocessConfig:
    """The description's preprocessing, or one from the flags (each required) and the input's layout."""
    from ltdeploy.preprocess import PreprocessConfig

    layout, (h, w) = input_layout(model)
    given = {k: v for k, v in flags.items() if v not in (None, ())}
    if existing is not None:
        if given:
            raise LtDeployError(f"the model describes its own preprocessing; drop --{', --'.join(given)}"
                                .replace("_", "-"))
        return existing.preprocess
    size = given.get("input_size")
    if size is None and h and w:
        size = (h, w)
    elif size is not None:
        size = (size, size)
        if h and w and (h, w) != size:
            raise LtDeployError(f"--input-size {size[0]}: the model's input is fixed at {h}x{w}")
    missing = [name for name, value in (("input-size", size), ("resize-short", given.get("resize_short")),
                                        ("interpolation", given.get("interpolation")),
                                        ("mean", given.get("mean")), ("std", given.get("std"))) if value is None]
    if missing:
        raise LtDeployError(f"the model has no ltdeploy description, so its preprocessing must be given: "
                            f"--{', --'.join(missing)} (what it was trained with; nothing is assumed)")
    try:
        return PreprocessConfig(input_size=size, resize_short=given["resize_short"],
                                interpolation=given["interpolation"], mean=tuple(given["mean"]),
                                std=tuple(given["std"]), color_order=given.get("color_order") or "RGB",
                                layout=layout)
    except Exception as exc:  # MetadataError: sizes that do not fit together
        raise LtDeployError(str(exc)) from None
