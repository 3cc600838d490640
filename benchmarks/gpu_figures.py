"""The GPU side of run_latency.py: trtexec's own figure for a plan, and what the GPU and TensorRT were."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmarks.latency_targets import Target


def trtexec_flags(major: int) -> list[str]:
    """trtexec flags for GPU compute time without copies, CUDA graphs or spin-wait on either major version:
    11 turns CUDA graphs and spin-wait on and copies off by default (and ignores --noDataTransfers); 10 has
    them the other way round and knows neither --noCudaGraph nor --noSpinWait."""
    common = ["--warmUp=200", "--duration=3", "--percentile=50,90,99"]
    return common + (["--noCudaGraph", "--noSpinWait"] if major >= 11 else ["--noDataTransfers"])


def trtexec_figure(plan: str, input_name: str, shape: tuple[int, ...]) -> dict | None:
    """trtexec's GPU compute time for `plan` at `shape` (median and p99, ms), with the exact command; None
    when trtexec is not on PATH (the pip wheels have none)."""
    import re
    import shutil
    import subprocess

    exe = shutil.which("trtexec")
    if exe is None:
        return None
    import tensorrt

    major = int(tensorrt.__version__.split(".")[0])
    cmd = [exe, f"--loadEngine={plan}", f"--shapes={input_name}:{'x'.join(map(str, shape))}", *trtexec_flags(major)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    line = next((ln for ln in out.splitlines() if "GPU Compute Time:" in ln), "")
    median = re.search(r"median = ([0-9.]+) ms", line)
    p99 = re.search(r"percentile\(99%\) = ([0-9.]+) ms", line)
    return {"command": " ".join(cmd), "gpu_compute_median_ms": float(median.group(1)) if median else None,
            "gpu_compute_p99_ms": float(p99.group(1)) if p99 else None}


def gpu_environment(targets: list[Target]) -> dict:
    """GPU, driver, CUDA and TensorRT versions when any target runs on the GPU."""
    env: dict = {}
    backends = [t for t in targets if t.plan]
    if backends:
        import tensorrt

        from ltdeploy.gpu.cuda import current_gpu
        gpu = current_gpu()
        env = {"gpu": gpu.name, "compute_capability": gpu.compute_capability, "driver": gpu.driver,
               "cuda_runtime": gpu.cuda_runtime, "tensorrt": tensorrt.__version__}
    return env
