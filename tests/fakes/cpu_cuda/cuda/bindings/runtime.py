"""A host-memory stand-in for `cuda.bindings.runtime`: every call returns (status, values...) like the real
binding; "device" memory is host memory, copies are memmoves, streams and events are bookkeeping. `LIVE`
counts what is allocated or created and not yet freed or destroyed, so tests can check the backend's
clean-up."""
from __future__ import annotations

import ctypes
import enum
import itertools
import threading
import time
import warnings


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInvalidDevice = 101


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


cudaStreamNonBlocking = 1
LIVE = {"device": {}, "host": {}, "streams": set(), "events": set()}
CALLS: list[str] = []
_ids = itertools.count(0x1000)
CURRENT = {"device": 0}


class _Handle:
    def __init__(self) -> None:
        self._address = next(_ids)

    def __int__(self) -> int:
        warnings.warn("int(cuda object) is deprecated; use cuda.bindings.utils.get_cuda_native_handle",
                      DeprecationWarning, stacklevel=2)
        return self._address


class cudaStream_t(_Handle):
    pass


class cudaEvent_t(_Handle):
    def __init__(self) -> None:
        super().__init__()
        self.time = 0.0


class _Props:
    name = b"Fake GPU\x00"
    major, minor = 9, 0


def cudaGetErrorName(status):
    return cudaError_t.cudaSuccess, cudaError_t(status).name.encode()


def cudaGetErrorString(status):
    return cudaError_t.cudaSuccess, f"fake CUDA error {int(status)}".encode()


def cudaGetDeviceCount():
    return cudaError_t.cudaSuccess, 1


def cudaSetDevice(index):
    CALLS.append(f"cudaSetDevice({index}) in thread {threading.get_ident()}")
    if index != 0:
        return (cudaError_t.cudaErrorInvalidDevice,)
    CURRENT["device"] = index
    return (cudaError_t.cudaSuccess,)


def cudaGetDeviceProperties(index):
    return cudaError_t.cudaSuccess, _Props()


def cudaDriverGetVersion():
    return cudaError_t.cudaSuccess, 12080


def cudaRuntimeGetVersion():
    return cudaError_t.cudaSuccess, 12080


def _alloc(kind: str, nbytes: int):
    buf = ctypes.create_string_buffer(int(nbytes))
    ptr = ctypes.addressof(buf)
    LIVE[kind][ptr] = buf
    return cudaError_t.cudaSuccess, ptr


def cudaMalloc(nbytes):
    return _alloc("device", nbytes)


def cudaMallocHost(nbytes):
    return _alloc("host", nbytes)


def cudaFree(ptr):
    LIVE["device"].pop(int(ptr), None)
    return (cudaError_t.cudaSuccess,)


def cudaFreeHost(ptr):
    LIVE["host"].pop(int(ptr), None)
    return (cudaError_t.cudaSuccess,)


def cudaMemcpyAsync(dst, src, nbytes, kind, stream):
    CALLS.append(f"cudaMemcpyAsync({cudaMemcpyKind(kind).name})")
    pinned = {cudaMemcpyKind.cudaMemcpyHostToDevice: src, cudaMemcpyKind.cudaMemcpyDeviceToHost: dst}.get(kind)
    if pinned is not None and int(pinned) not in LIVE["host"]:
        CALLS.append("pageable copy")
    ctypes.memmove(int(dst), int(src), int(nbytes))
    return (cudaError_t.cudaSuccess,)


def cudaMemcpy(dst, src, nbytes, kind):
    ctypes.memmove(int(dst), int(src), int(nbytes))
    return (cudaError_t.cudaSuccess,)


def _create(kind: str, cls):
    handle = cls()
    LIVE[kind].add(handle._address)
    return cudaError_t.cudaSuccess, handle


def _destroy(kind: str, handle):
    LIVE[kind].discard(handle._address)
    return (cudaError_t.cudaSuccess,)


def cudaStreamCreateWithFlags(flags):
    return _create("streams", cudaStream_t)


def cudaStreamDestroy(stream):
    return _destroy("streams", stream)


def cudaDeviceSynchronize():
    return (cudaError_t.cudaSuccess,)


def cudaStreamSynchronize(stream):
    return (cudaError_t.cudaSuccess,)


def cudaEventCreate():
    return _create("events", cudaEvent_t)


def cudaEventDestroy(event):
    return _destroy("events", event)


def cudaEventRecord(event, stream):
    event.time = time.perf_counter()
    return (cudaError_t.cudaSuccess,)


def cudaEventSynchronize(event):
    return (cudaError_t.cudaSuccess,)


def cudaEventElapsedTime(start, end):
    return cudaError_t.cudaSuccess, (end.time - start.time) * 1000.0
