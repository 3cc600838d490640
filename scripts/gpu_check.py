"""What a real NVIDIA GPU must show below TensorRT, in well under two minutes, without TensorRT installed.

    python scripts/gpu_check.py            # on a GPU machine with cuda-bindings (cuda-python) and numpy
    python scripts/gpu_check.py --train    # and a few training steps of each task there (scripts/gpu_training.py)
    python scripts/gpu_check.py --host-memory   # the same checks on the host-memory stand-in (CI, no GPU)

Part 1 drives `ltdeploy/gpu/cuda.py` on the device: the device query, device buffers, pinned host buffers, a
non-blocking stream, asynchronous copies both ways, events and native handles, destruction. Part 2 drives
the TensorRT backend's whole data path (profiles, input shapes, device addresses, output allocators,
execute_async_v3, copies back) with the fake `tensorrt` of tests/fakes on real device memory: a batch-
dependent output over two optimization profiles, a data-dependent one, an empty one. The fake's engines
compute in numpy between device copies; nothing here measures TensorRT itself.

Prints one line per check and a JSON summary; exits 1 if any check fails.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import threading
import time
import traceback
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKES = os.path.join(ROOT, "tests", "fakes")
RESULTS: list[dict] = []


def check(name: str):
    """Run the decorated function as one named check; record pass / fail and its detail."""
    def wrap(fn):
        start = time.perf_counter()
        try:
            detail = fn() or ""
            RESULTS.append({"check": name, "ok": True, "detail": detail})
        except Exception as exc:  # every failure is reported, the remaining checks still run
            RESULTS.append({"check": name, "ok": False, "detail": f"{type(exc).__name__}: {exc}",
                            "where": traceback.format_exc().splitlines()[-3:]})
        r = RESULTS[-1]
        print(f"{'ok  ' if r['ok'] else 'FAIL'} {name} ({time.perf_counter() - start:.2f} s) {r['detail']}",
              flush=True)
        return fn
    return wrap


def cuda_checks(info: dict) -> None:
    """The cuda-python layer: device query (into info["gpu"]), buffers, pinned copies, streams, events."""
    import numpy as np

    from ltdeploy.gpu import cuda

    @check("device query")
    def _():
        gpu = cuda.current_gpu(0)
        info["gpu"] = gpu
        return (f"{gpu.name}, compute capability {gpu.compute_capability}, driver {gpu.driver}, "
                f"runtime {gpu.cuda_runtime}")

    @check("device buffer grows and keeps its pointer when it need not")
    def _():
        buf = cuda.DeviceBuffer()
        a = buf.reserve(1 << 20)
        assert a and buf.reserve(1000) == a and buf.nbytes == 1 << 20
        b = buf.reserve(4 << 20)
        assert b and buf.nbytes == 4 << 20
        buf.free()
        assert buf.ptr == 0

    @check("pinned host buffer, non-blocking stream, async copies both ways, handle")
    def _():
        stream = cuda.Stream()
        assert isinstance(stream.ptr, int) and stream.ptr != 0
        host_in, host_out = cuda.PinnedBuffer(), cuda.PinnedBuffer()
        x = host_in.array((256, 1024), np.float32)
        x[...] = np.arange(x.size, dtype=np.float32).reshape(x.shape)
        dev = cuda.DeviceBuffer()
        ptr = dev.reserve(x.nbytes)
        stream.to_device(ptr, x)
        y = host_out.array(x.shape, np.float32)
        y[...] = 0
        stream.to_host(y, ptr)
        stream.synchronize()
        assert np.array_equal(x, y)
        stream.destroy()
        assert stream.handle is None
        return f"{x.nbytes / 1e6:.1f} MB round trip"

    @check("events time work on the stream")
    def _():
        stream = cuda.Stream()
        timer = cuda.EventTimer(stream)
        host = cuda.PinnedBuffer().array((64 << 20) // 4, np.float32)
        dev = cuda.DeviceBuffer()
        ptr = dev.reserve(host.nbytes)
        timer.begin()
        for _ in range(4):
            stream.to_device(ptr, host)
        ms = timer.finish()
        timer.destroy()
        stream.destroy()
        assert ms > 0
        return f"4 x 64 MB host to device in {ms:.2f} ms ({4 * 64 / 1024 / (ms / 1e3):.1f} GiB/s)"


def write_kernel_plan(trt, gpu, folder: str, kernel: str, task: str, inputs, outputs, profiles, names,
                      pp) -> str:
    """A fake plan running `kernel`, with the description and build record beside it as `ltdeploy build` writes."""
    from ltdeploy.files import file_sha256
    from ltdeploy.gpu.plan import BuildInfo, TensorSpec, write_plan_description
    from ltdeploy.metadata import ModelDescription

    path = os.path.join(folder, f"{kernel}.trt")
    with open(path, "wb") as fh:
        fh.write(trt.kernel_plan(kernel, inputs, outputs, profiles))
    desc = ModelDescription(task=task, class_names=[f"c{i}" for i in range(10)], class_counts=[10] * 10,
                            group_thresholds=(5, 2), preprocess=pp, input_name="images", output_names=names)
    build = BuildInfo(tensorrt_version=trt.__version__, gpu_name=gpu.name,
                      compute_capability=gpu.compute_capability, precision="fp32",
                      profiles=[{k: [list(s) for s in v] for k, v in p.items()} for p in profiles],
                      tensors=[TensorSpec(n, "input", "float32", list(s)) for n, s, _ in inputs]
                      + [TensorSpec(n, "output", "float32", list(s)) for n, s, _ in outputs],
                      onnx_sha256="0" * 64, plan_sha256=file_sha256(path))
    write_plan_description(path, desc, build)
    return path


def register_kernels(trt) -> tuple:
    """The fake's two kernels: a linear classifier (its weights returned) and a thresholding detector."""
    import numpy as np

    trt.STATE["warnings_on_execute"] = 0
    weights = np.random.default_rng(0).standard_normal((3, 10)).astype(np.float32)
    trt.register_kernel("classify", lambda f: {"logits": f["images"].mean(axis=(2, 3)) @ weights})

    def detect(f):
        x = f["images"][0, 0]
        ys, xs = np.nonzero(x > 0.5)
        boxes = np.stack([xs, ys, xs + 1, ys + 1], 1).astype(np.float32).reshape(-1, 4)
        return {"boxes": boxes, "scores": x[ys, xs].astype(np.float32)}
    trt.register_kernel("detect", detect)
    return weights, detect


def plan_checks(info: dict) -> str:
    """The plan checks below in a temporary folder, removed afterwards; returns the fake's version."""
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        return _plan_checks(info, tmp)


def _plan_checks(info: dict, tmp: str) -> str:
    """TensorRTBackend on the fake's kernel plans: profiles, data-dependent and empty outputs, threads; returns
    the fake's version."""
    import numpy as np
    import tensorrt as trt

    from ltdeploy.backends.tensorrt import TensorRTBackend
    from ltdeploy.preprocess import PreprocessConfig

    weights, detect = register_kernels(trt)

    plan = functools.partial(write_kernel_plan, trt, info["gpu"], tmp)
    f32 = trt.DataType.FLOAT

    @check("batch-dependent output over two optimization profiles")
    def _():
        path = plan("classify", "classification", [("images", (-1, 3, 8, 8), f32)], [("logits", (-1, 10), f32)],
                    [{"images": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))},
                     {"images": ((8, 3, 8, 8), (16, 3, 8, 8), (32, 3, 8, 8))}], ["logits"],
                    PreprocessConfig(input_size=(8, 8), resize_short=0, interpolation="bilinear", mean=(0.5,) * 3,
                                     std=(0.5,) * 3))
        backend = TensorRTBackend(path)
        rng = np.random.default_rng(1)
        for n in (3, 16, 1, 32):
            x = rng.random((n, 3, 8, 8), dtype=np.float32)
            got = backend.run({"images": x})["logits"]
            np.testing.assert_allclose(got, x.mean(axis=(2, 3)) @ weights, rtol=1e-5, atol=1e-5)
        ms = backend.gpu_time({"images": np.zeros((2, 3, 8, 8), np.float32)})
        backend.close()
        return f"batches 3, 16, 1, 32 exact; profile switches 0 -> 1 -> 0 -> 1; gpu_time {ms:.2f} ms"

    @check("data-dependent and empty outputs through the output allocator, from another thread too")
    def _():
        path = plan("detect", "detection", [("images", (1, 3, -1, -1), f32)],
                    [("boxes", (-1, 4), f32), ("scores", (-1,), f32)],
                    [{"images": ((1, 3, 16, 16), (1, 3, 48, 64), (1, 3, 64, 64))}], ["boxes", "scores"],
                    PreprocessConfig.fit(64, 64))
        backend = TensorRTBackend(path)
        rng = np.random.default_rng(2)
        counts = []
        for h, w in ((48, 64), (64, 48), (16, 16)):
            x = rng.random((1, 3, h, w), dtype=np.float32)
            out = backend.run({"images": x})
            want = detect({"images": x})
            assert out["boxes"].shape == want["boxes"].shape and np.array_equal(out["scores"], want["scores"])
            counts.append(len(out["scores"]))
        empty = backend.run({"images": np.zeros((1, 3, 32, 32), np.float32)})
        assert empty["boxes"].shape == (0, 4) and empty["scores"].shape == (0,)
        seen = {}
        t = threading.Thread(target=lambda: seen.update(out=backend.run({"images": np.ones((1, 3, 16, 16),
                                                                                             np.float32)})))
        t.start()
        t.join()
        assert len(seen["out"]["scores"]) == 256
        backend.close()
        return f"detections {counts}, then 0 (empty), then 256 from a second thread"
    return trt.__version__


def main(argv: list[str] | None = None) -> int:
    """Set up the import path, run both parts, print the summary."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host-memory", action="store_true", help="use the host-memory cuda-bindings stand-in")
    p.add_argument("--json", help="also write the summary here")
    p.add_argument("--train", action="store_true", help="also train on the GPU (scripts/gpu_training.py; torch)")
    args = p.parse_args(argv)
    sys.path[:0] = [FAKES] + ([os.path.join(FAKES, "cpu_cuda")] if args.host_memory else []) + [ROOT]
    try:
        import cv2  # noqa: F401  (ltdeploy's image code; the data path below never calls it)
    except ImportError:
        stub = types.ModuleType("cv2")
        stub.__getattr__ = lambda name: 0  # constants read at import time
        sys.modules["cv2"] = stub
    from ltdeploy.gpu import cuda

    cuda.runtime()  # a clear error now if cuda-python is missing
    info: dict = {}
    cuda_checks(info)
    version = plan_checks(info)
    if args.train:
        from gpu_training import training_checks

        training_checks(check, "cuda")

    ok = all(r["ok"] for r in RESULTS)
    summary = {"ok": ok, "host_memory": args.host_memory, "tensorrt": f"fake {version}",
               "checks": RESULTS}
    print(json.dumps(summary, default=str))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=1, default=str)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
