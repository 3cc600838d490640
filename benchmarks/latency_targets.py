"""What run_latency.py times: an engine through ltdeploy's backends, or a checkpoint in PyTorch eager."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ltdeploy.backends import load_backend
from ltdeploy.tasks import task_spec


@dataclass
class Target:
    """Something to time: a name and a function running one batch."""

    name: str
    run: Callable[[np.ndarray], object]
    input_size: tuple[int, int]
    provider: str
    preprocess: object = None
    task: str = "classification"
    precision: str = "fp32"
    gpu: Callable[[np.ndarray], float] | None = None  # GPU-only milliseconds of one batch
    e2e: Callable[[list[bytes]], object] | None = None  # encoded images → results, as `ltdeploy predict`
    plan: str | None = None
    input_name: str = "images"
    times: dict[int, list[float]] = field(default_factory=dict)
    gpu_times: dict[int, list[float]] = field(default_factory=dict)
    e2e_times: dict[int, list[float]] = field(default_factory=dict)


def engine_target(path: str, threads: int, spinning: bool, device: str = "auto") -> Target:
    """An engine through ltdeploy's backend (the code path `ltdeploy predict` uses)."""
    from ltdeploy.image_io import decode_image
    from ltdeploy.predictor import Predictor

    backend = load_backend(path, device=device, threads=threads, spinning=spinning)
    desc = backend.description
    name, out = desc.input_name, desc.output_names[0]
    predictor = Predictor(backend)
    build = getattr(backend, "build", None)
    gpu_time = getattr(backend, "gpu_time", None)

    def e2e(encoded: list[bytes]):
        images = [decode_image(b) for b in encoded]
        return predictor.predict_arrays([str(i) for i in range(len(images))], images)

    return Target(path, lambda x: backend.run({name: x})[out], desc.preprocess.shape_range()[1], backend.provider,
                  preprocess=desc.preprocess, task=desc.task, precision=engine_precision(desc, build),
                  gpu=(lambda x: gpu_time({name: x})) if gpu_time else None, e2e=e2e,
                  plan=path if build else None, input_name=name)


def engine_precision(desc, build) -> str:
    """fp32 / fp16 / int8: a plan's build record, else the ONNX description's precision record (an fp16 ONNX
    written by `ltdeploy build --fp16 -o x.onnx` carries none and reads fp32 here)."""
    if build is not None:
        return build.precision
    return desc.precision.get("weights", "fp32")


def torch_target(path: str, threads: int) -> Target:
    """A checkpoint in PyTorch eager mode (inference_mode, same thread count)."""
    import torch

    from training.checkpoints import read_checkpoint

    torch.set_num_threads(threads)
    ck = read_checkpoint(path)

    detector = task_spec(ck.description.task).one_image_per_call

    def run(x: np.ndarray):
        with torch.inference_mode():
            t = torch.from_numpy(x)
            return ck.model(list(t)) if detector else ck.model(t)
    return Target(f"{path} (torch eager)", run, ck.description.preprocess.shape_range()[1],
                  f"torch {torch.__version__} CPU",
                  preprocess=ck.description.preprocess, task=ck.description.task)
