"""The little of CUDA the TensorRT path needs (device query, memory, streams, events), via cuda-python.

cuda-python is a thin binding: each call returns (error, value...). `call` turns a failed status into
a one-line EngineError. Streams and events are destroyed with their objects, host staging memory is
pinned (asynchronous copies from pageable memory are synchronous in disguise), and handles are read with
`get_cuda_native_handle` where cuda-bindings has it (`int(handle)` is deprecated in 13). Imported only by
the TensorRT builder, backend and GPU benchmarks.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np

from ltdeploy.errors import EngineError


def runtime():
    """The CUDA runtime module of cuda-python (12.x/13.x `cuda.bindings.runtime`, older `cuda.cudart`)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError:
            raise EngineError("the TensorRT path needs cuda-python: pip install 'ltdeploy[gpu-trt10]' or "
                              "'ltdeploy[gpu-trt11]'") from None
    return cudart


def native_handle(obj: Any) -> int:
    """The address behind a stream or event object, as TensorRT takes it."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:  # cuda-python < 12.8: int() is the only way
        return int(obj)
    return int(get_cuda_native_handle(obj))


def set_device(index: int) -> None:
    """Make GPU `index` current in the calling thread (CUDA's current device is per thread)."""
    call(runtime().cudaSetDevice(index))


def call(result: Any) -> Any:
    """Unpack a cuda-python result tuple, raising EngineError on a non-success status."""
    cudart = runtime()
    status, *rest = result if isinstance(result, tuple) else (result,)
    if status != cudart.cudaError_t.cudaSuccess:
        _, name = cudart.cudaGetErrorName(status)
        _, text = cudart.cudaGetErrorString(status)
        raise EngineError(f"CUDA error {name.decode() if isinstance(name, bytes) else name}: "
                          f"{text.decode() if isinstance(text, bytes) else text}")
    return None if not rest else rest[0] if len(rest) == 1 else tuple(rest)


@dataclass(frozen=True)
class Gpu:
    """The GPU a plan is built for or run on."""

    index: int
    name: str
    compute_capability: str
    driver: str
    cuda_runtime: str


def _version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}"


def current_gpu(index: int = 0) -> Gpu:
    """Describe GPU `index`; a clear error when there is none."""
    cudart = runtime()
    status, count = cudart.cudaGetDeviceCount()
    if status != cudart.cudaError_t.cudaSuccess or count == 0:
        raise EngineError("no CUDA GPU is visible (TensorRT plans need one); check nvidia-smi and "
                          "CUDA_VISIBLE_DEVICES, or use the .onnx engine on the CPU")
    if index >= count:
        raise EngineError(f"GPU {index} requested, {count} visible")
    set_device(index)
    prop = call(cudart.cudaGetDeviceProperties(index))
    name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
    return Gpu(index, name, f"{prop.major}.{prop.minor}", _version(call(cudart.cudaDriverGetVersion())),
               _version(call(cudart.cudaRuntimeGetVersion())))


class DeviceBuffer:
    """Device memory that grows on demand and is freed with the object."""

    _alloc, _release = "cudaMalloc", "cudaFree"

    def __init__(self) -> None:
        self.ptr, self.nbytes = 0, 0

    def reserve(self, nbytes: int) -> int:
        """A pointer to at least `nbytes` bytes (reallocated only when it must grow)."""
        if nbytes > self.nbytes:
            self.free()
            self.ptr, self.nbytes = int(call(getattr(runtime(), self._alloc)(max(nbytes, 1)))), nbytes
        return self.ptr

    def free(self) -> None:
        """Release the memory."""
        if self.ptr:
            getattr(runtime(), self._release)(self.ptr)
        self.ptr, self.nbytes = 0, 0

    def __del__(self) -> None:
        try:
            self.free()
        except Exception:  # interpreter shutdown: the driver may be gone already
            pass


class PinnedBuffer(DeviceBuffer):
    """Page-locked host memory that grows on demand, seen as numpy arrays; freed with the object."""

    _alloc, _release = "cudaMallocHost", "cudaFreeHost"

    def array(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A C-contiguous array of `shape` and `dtype` over this memory (valid until the next call)."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes == 0:
            return np.empty(shape, dtype)
        raw = (ctypes.c_char * nbytes).from_address(self.reserve(nbytes))
        return np.frombuffer(raw, dtype=dtype, count=nbytes // dtype.itemsize).reshape(shape)


class Stream:
    """A non-default CUDA stream (TensorRT's enqueue must not use the legacy default stream)."""

    def __init__(self) -> None:
        cudart = runtime()
        self.handle = call(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking))
        self.ptr = native_handle(self.handle)  # the integer execute_async_v3 takes

    def destroy(self) -> None:
        """Destroy the stream (after waiting for its work)."""
        if self.handle is not None:
            cudart = runtime()
            cudart.cudaStreamSynchronize(self.handle)
            cudart.cudaStreamDestroy(self.handle)
            self.handle = None

    def __del__(self) -> None:
        try:
            self.destroy()
        except Exception:  # interpreter shutdown
            pass

    def to_device(self, dst: int, host: np.ndarray) -> None:
        """Copy a C-contiguous host array to device memory, asynchronously on this stream."""
        cudart = runtime()
        call(cudart.cudaMemcpyAsync(dst, host.ctypes.data, host.nbytes,
                                    cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.handle))

    def to_host(self, host: np.ndarray, src: int) -> None:
        """Copy device memory into a C-contiguous host array, asynchronously on this stream."""
        cudart = runtime()
        call(cudart.cudaMemcpyAsync(host.ctypes.data, src, host.nbytes,
                                    cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.handle))

    def synchronize(self) -> None:
        """Wait for everything queued on this stream."""
        call(runtime().cudaStreamSynchronize(self.handle))


class EventTimer:
    """GPU-side time between two points on a stream, with CUDA events."""

    def __init__(self, stream: Stream) -> None:
        cudart = runtime()
        self.stream = stream
        self.start, self.end = call(cudart.cudaEventCreate()), call(cudart.cudaEventCreate())

    def destroy(self) -> None:
        """Destroy both events."""
        cudart = runtime()
        for event in (self.start, self.end):
            if event is not None:
                cudart.cudaEventDestroy(event)
        self.start = self.end = None

    def __del__(self) -> None:
        try:
            self.destroy()
        except Exception:  # interpreter shutdown
            pass

    def begin(self) -> None:
        """Record the start event."""
        call(runtime().cudaEventRecord(self.start, self.stream.handle))

    def finish(self) -> float:
        """Record the end event, wait for it, return the elapsed GPU time in milliseconds."""
        cudart = runtime()
        call(cudart.cudaEventRecord(self.end, self.stream.handle))
        call(cudart.cudaEventSynchronize(self.end))
        return float(call(cudart.cudaEventElapsedTime(self.start, self.end)))
