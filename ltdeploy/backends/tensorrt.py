"""TensorRT backend for `.trt` / `.engine` / `.plan` files (TensorRT 10.x / 11.x, cuda-python for memory).

Before deserializing, the plan header, the description beside it, the installed TensorRT and this GPU
are checked (`ltdeploy.gpu.plan.check_plan`), so a mismatch is one clear line rather than a None engine
and a log message; the bundled plugins are registered first (the detectors' RoiAlign is one). Tensors
are addressed by name; every output goes through an output allocator, which covers the batch-dependent
shapes of classification and segmentation and the data-dependent ones of detection (NMS) with one code
path. Work runs on the backend's own non-blocking stream, through pinned host buffers, with the GPU made
current in whichever thread calls.
"""
from __future__ import annotations

import threading

import numpy as np

from ltdeploy.backends.base import Backend
from ltdeploy.errors import EngineError, InputShapeError
from ltdeploy.gpu.plan import check_plan
from ltdeploy.gpu.trt_common import capturing_logger, import_tensorrt, register_plugins


def _gpu_index(device: str) -> int:
    if device in ("cuda", "auto"):
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    raise EngineError(f"device {device!r}: TensorRT plans run on cuda or cuda:N")


def _output_allocator(trt):
    """An IOutputAllocator that grows one device buffer per output and records the shape TensorRT reports.
    Only the asynchronous reallocation is implemented: the synchronous one is deprecated in TensorRT 10."""
    from ltdeploy.gpu.cuda import DeviceBuffer

    class OutputAllocator(trt.IOutputAllocator):
        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)
            self.buffer = DeviceBuffer()
            self.shape: tuple[int, ...] | None = None

        def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):  # noqa: D102
            return self.buffer.reserve(int(size))  # cudaMalloc is 256-byte aligned

        def notify_shape(self, tensor_name, shape):  # noqa: D102
            self.shape = tuple(int(d) for d in shape)

    return OutputAllocator()


def _outside(shape: tuple[int, ...], lo, hi) -> list[int]:
    return [i for i, (a, s, b) in enumerate(zip(lo, shape, hi)) if not a <= s <= b]


class TensorRTBackend(Backend):
    """Runs a TensorRT plan built by `ltdeploy build` (or by trtexec, with the description written beside it)."""

    def __init__(self, path: str, device: str = "cuda", threads: int = 0) -> None:
        from ltdeploy.gpu.cuda import DeviceBuffer, PinnedBuffer, Stream, current_gpu

        trt = import_tensorrt(f"{path}: a TensorRT plan")
        self.path, self._trt = path, trt
        self.gpu = current_gpu(_gpu_index(device))
        self._current = threading.local()
        self._current.ok = True  # current_gpu made it current in this thread
        self.description, self.build = check_plan(path, trt.__version__, self.gpu.compute_capability,
                                                  self.gpu.name)
        self._logger = capturing_logger(trt)
        register_plugins(trt, self._logger)
        self._runtime = trt.Runtime(self._logger)
        with open(path, "rb") as f:
            self.engine = self._runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise EngineError(f"{path}: TensorRT {trt.__version__} could not deserialize the plan "
                              f"({self._logger.last_error()})")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise EngineError(f"{path}: no execution context ({self._logger.last_error()}); out of GPU memory?")
        self.stream = Stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]
        self._dtype = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self._inputs = {n: DeviceBuffer() for n in self.input_names}
        self._host = {n: PinnedBuffer() for n in names}
        self._outputs = {n: _output_allocator(trt) for n in self.output_names}
        for name, alloc in self._outputs.items():
            if not self.context.set_output_allocator(name, alloc):
                raise EngineError(f"{path}: TensorRT refused an output allocator for {name!r}")
        self._profile = 0
        if self.description.input_name not in self.input_names:
            raise EngineError(f"{path}: description names input {self.description.input_name!r}, "
                              f"the plan has {self.input_names}")

    @property
    def provider(self) -> str:
        """'TensorRT 10.13.2 fp16 on NVIDIA L4 (sm_89)'."""
        cc = self.gpu.compute_capability.replace(".", "")
        return f"TensorRT {self._trt.__version__} {self.build.precision} on {self.gpu.name} (sm_{cc})"

    def _use_gpu(self) -> None:
        """Make the plan's GPU current in the calling thread (once per thread)."""
        from ltdeploy.gpu.cuda import set_device

        if not getattr(self._current, "ok", False):
            set_device(self.gpu.index)
            self._current.ok = True

    def _select_profile(self, name: str, shape: tuple[int, ...]) -> None:
        """Switch to the first optimization profile whose range holds `shape`; one-line error if none does."""
        ranges, dims_out = [], set()
        for k in range(self.engine.num_optimization_profiles):
            lo, _, hi = self.engine.get_tensor_profile_shape(name, k)
            ranges.append(f"{list(lo)}..{list(hi)}")
            outside = _outside(shape, lo, hi) if len(lo) == len(shape) else [-1]
            if not outside:
                if k != self._profile:
                    if not self.context.set_optimization_profile_async(k, self.stream.ptr):
                        raise EngineError(f"{self.path}: TensorRT could not switch to optimization profile {k} "
                                          f"({self._logger.last_error()})")
                    self._profile = k
                return
            dims_out.update(outside)
        if dims_out <= {0}:
            fix = "rebuild with a larger --max-batch (or one more --batch-range)"
        else:
            fix = ("this image's model input has another height or width than the plan was built for; rebuild "
                   "the plan from an ONNX exported with the preprocessing you run")
        raise InputShapeError(f"{self.path}: input {name!r} of shape {list(shape)} is outside the plan's "
                              f"profiles ({', '.join(ranges)}); {fix}")

    def _stage(self, inputs: dict[str, np.ndarray]) -> None:
        """Shapes, profile and device copies of the inputs (through pinned host memory)."""
        self._use_gpu()
        for name in self.input_names:
            if name not in inputs:
                raise InputShapeError(f"{self.path}: input {name!r} missing; inputs are {self.input_names}")
        for name, arr in inputs.items():
            if name not in self._inputs:
                raise InputShapeError(f"{self.path}: no input named {name!r}; inputs are {self.input_names}")
            arr = np.asarray(arr)
            if -1 in tuple(self.engine.get_tensor_shape(name)):
                self._select_profile(name, arr.shape)
            if not self.context.set_input_shape(name, arr.shape):
                raise InputShapeError(f"{self.path}: input {name!r} expects shape "
                                      f"{list(self.engine.get_tensor_shape(name))}, got {list(arr.shape)}")
            host = self._host[name].array(arr.shape, self._dtype[name])
            host[...] = arr
            ptr = self._inputs[name].reserve(host.nbytes)
            self.stream.to_device(ptr, host)
            self.context.set_tensor_address(name, ptr)

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.ptr):
            raise EngineError(f"{self.path}: TensorRT execution failed ({self._logger.last_error()})")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copy inputs in, enqueue on our stream, copy outputs out (shapes as TensorRT reports them)."""
        self._stage(inputs)
        self._enqueue()
        self.stream.synchronize()  # data-dependent shapes are final once the enqueued work has run
        staged = {}
        for name, alloc in self._outputs.items():
            shape = alloc.shape if alloc.shape is not None else tuple(self.context.get_tensor_shape(name))
            host = self._host[name].array(shape, self._dtype[name])
            if host.nbytes:
                self.stream.to_host(host, alloc.buffer.ptr)
            staged[name] = host
        self.stream.synchronize()
        return {name: host.copy() for name, host in staged.items()}  # the pinned buffers are reused

    def gpu_time(self, inputs: dict[str, np.ndarray]) -> float:
        """GPU time of one enqueue in milliseconds (CUDA events around execute_async_v3; copies excluded)."""
        from ltdeploy.gpu.cuda import EventTimer

        self._stage(inputs)
        self.stream.synchronize()
        if not hasattr(self, "_timer"):
            self._timer = EventTimer(self.stream)
        self._timer.begin()
        self._enqueue()
        return self._timer.finish()

    def close(self) -> None:
        """Release the context, engine, stream, events and buffers now rather than at garbage collection."""
        if getattr(self, "_timer", None) is not None:
            self._timer.destroy()
            self._timer = None
        for buffers in (self._inputs, self._host):
            for buf in buffers.values():
                buf.free()
        for alloc in self._outputs.values():
            alloc.buffer.free()
        self.context = self.engine = None
        self.stream.destroy()
