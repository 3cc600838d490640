"""A stand-in for TensorRT's Python API (10.x / 11.x), as much of it as ltdeploy uses, for tests on
machines without TensorRT. See ../README.md.

What it mirrors from the real library: the plugin registry must be initialised before an ONNX with
RoiAlign parses or its plan deserialises; TF32 is on by default in a builder config; 11.x has no
BuilderFlag.FP16 and no EXPLICIT_BATCH; parser errors carry the node's name and operator; a plan runs
only on the version that built it; data-dependent outputs go through IOutputAllocator callbacks; the
execution context takes the stream as an integer. `STATE` records what the caller did.
"""
from __future__ import annotations

import enum
import json
import os
import struct
import threading
from types import SimpleNamespace

import numpy as np

__version__ = os.environ.get("FAKE_TENSORRT_VERSION", "10.13.2.6")
_MAJOR = int(__version__.split(".")[0])
_MAGIC = 0x74727466
STATE: dict = {}


def fake_reset() -> None:
    """Forget plugins, flags and logs (TensorRT's plugin registry lives as long as the process)."""
    STATE.clear()
    STATE.update(plugins=False, network_flags=None, configs=[], warnings_on_execute=1, refuse_profile_switch=False,
                 execute_threads=[], streams=[])


fake_reset()


class ILogger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self) -> None:
        pass

    def log(self, severity, msg: str) -> None:  # overridden by callers
        raise NotImplementedError


class Logger(ILogger):
    def __init__(self, min_severity=ILogger.Severity.WARNING) -> None:
        super().__init__()
        self.min_severity = min_severity

    def log(self, severity, msg: str) -> None:
        pass


def init_libnvinfer_plugins(logger, namespace: str) -> bool:
    STATE["plugins"] = True
    return True


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    INT64 = 8


_NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
       DataType.BOOL: np.bool_, DataType.UINT8: np.uint8, DataType.INT64: np.int64}
_FROM_ONNX = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32, 9: DataType.BOOL,
              2: DataType.UINT8, 7: DataType.INT64}


def nptype(dtype):
    return _NP[DataType(dtype)]


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


_flags = {"TF32": 7, "REFIT": 3, "SPARSE_WEIGHTS": 6, "VERSION_COMPATIBLE": 14}
if _MAJOR == 10:
    _flags.update(FP16=0, INT8=1)
BuilderFlag = enum.IntEnum("BuilderFlag", _flags)
_net_flags = {"STRONGLY_TYPED": 1}
if _MAJOR == 10:
    _net_flags["EXPLICIT_BATCH"] = 0
NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", _net_flags)


class IOutputAllocator:
    def __init__(self) -> None:
        pass

    def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
        raise NotImplementedError

    def notify_shape(self, tensor_name, shape) -> None:
        raise NotImplementedError


# -- building -------------------------------------------------------------------------------------------------


class _Tensor(SimpleNamespace):
    pass


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self.flags, self.inputs, self.outputs, self.onnx = flags, [], [], b""

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_input(self, i: int):
        return self.inputs[i]

    def get_output(self, i: int):
        return self.outputs[i]


class ParserError:
    def __init__(self, desc: str, node: int = -1, node_name: str = "", node_operator: str = "") -> None:
        self._desc, self._node, self._name, self._op = desc, node, node_name, node_operator

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return self._node

    def node_name(self) -> str:
        return self._name

    def node_operator(self) -> str:
        return self._op


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger) -> None:
        self.network, self.logger, self.errors = network, logger, []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, i: int) -> ParserError:
        return self.errors[i]

    def parse_from_file(self, path: str) -> bool:
        import onnx

        from ltdeploy.graph_check import trt_blockers

        model = onnx.load(path)
        for i, node in enumerate(model.graph.node):
            if node.op_type == "RoiAlign" and not STATE["plugins"]:
                self.errors.append(ParserError("Plugin not found, are the plugin name, version, and namespace "
                                               "correct? (ROIAlign_TRT)", i, node.name, node.op_type))
                return False
            if node.op_type == "Loop" and trt_blockers(onnx.helper.make_model(onnx.helper.make_graph(
                    [node], "g", [], []))):
                self.errors.append(ParserError("The shape of Loop carried dependencies must be the same across "
                                               "all loop iterations", i, node.name, node.op_type))
                return False
        init = {t.name for t in model.graph.initializer}

        def tensor(v):
            dims = tuple(d.dim_value if d.dim_value > 0 else -1 for d in v.type.tensor_type.shape.dim)
            return _Tensor(name=v.name, shape=dims, dtype=_FROM_ONNX[v.type.tensor_type.elem_type])

        self.network.inputs = [tensor(v) for v in model.graph.input if v.name not in init]
        self.network.outputs = [tensor(v) for v in model.graph.output]
        self.network.onnx = model.SerializeToString()
        self.network.has_roialign = any(n.op_type == "RoiAlign" for n in model.graph.node)
        return True


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, name: str, min, opt, max) -> None:
        lo, mid, hi = (tuple(int(d) for d in s) for s in (min, opt, max))
        if not (len(lo) == len(mid) == len(hi)) or any(a > b or b > c for a, b, c in zip(lo, mid, hi)) \
                or any(d < 1 for d in lo):
            raise RuntimeError(f"IOptimizationProfile::setDimensions: Error Code 3: API Usage Error "
                               f"(inconsistent dimensions for {name})")
        self.shapes[name] = (lo, mid, hi)


class IBuilderConfig:
    def __init__(self) -> None:
        self.flags = {BuilderFlag.TF32}  # on by default, as in TensorRT
        self.profiles: list[IOptimizationProfile] = []
        self.pools: dict = {}
        STATE["configs"].append(self)

    def set_flag(self, flag) -> None:
        self.flags.add(BuilderFlag(flag))

    def clear_flag(self, flag) -> None:
        self.flags.discard(BuilderFlag(flag))

    def get_flag(self, flag) -> bool:
        return BuilderFlag(flag) in self.flags

    def set_memory_pool_limit(self, pool, size: int) -> None:
        self.pools[pool] = int(size)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1


def _header(version: str) -> bytes:
    parts = [int(v) for v in version.split(".")[:4]] + [0] * 4
    return struct.pack("<II", _MAGIC, 0) + bytes(16) + bytes(parts[:4])


class Builder:
    def __init__(self, logger) -> None:
        self.logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        STATE["network_flags"] = int(flags)
        return INetworkDefinition(int(flags))

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig):
        dynamic = [t for t in network.inputs if -1 in t.shape]
        if dynamic and not config.profiles:
            self.logger.log(ILogger.Severity.ERROR, "Network has dynamic or shape inputs, but no optimization "
                                                    "profile has been defined.")
            return None
        self.logger.log(ILogger.Severity.WARNING, "fake TensorRT: building on the CPU stand-in")
        profiles = [{t.name: p.shapes.get(t.name, (t.shape,) * 3) for t in network.inputs}
                    for p in (config.profiles or [IOptimizationProfile()])]
        meta = {"inputs": [[t.name, list(t.shape), int(t.dtype)] for t in network.inputs],
                "outputs": [[t.name, list(t.shape), int(t.dtype)] for t in network.outputs],
                "profiles": [{k: [list(s) for s in v] for k, v in p.items()} for p in profiles],
                "plugins": bool(getattr(network, "has_roialign", False))}
        text = json.dumps(meta).encode()
        return _header(__version__) + struct.pack("<Q", len(text)) + text + network.onnx


# -- plans computed by Python functions (no ONNX, no ONNX Runtime: scripts/gpu_check.py) ----------------------

KERNELS: dict = {}


def register_kernel(name: str, fn) -> None:
    """Make `fn({input name: array}) -> {output name: array}` available to plans written by `kernel_plan`."""
    KERNELS[name] = fn


def kernel_plan(kernel: str, inputs: list, outputs: list, profiles: list[dict]) -> bytes:
    """A plan whose engine runs the registered `kernel`: inputs / outputs as (name, shape with -1, DataType),
    profiles as {input name: (min, opt, max)}."""
    meta = {"inputs": [[n, list(s), int(d)] for n, s, d in inputs],
            "outputs": [[n, list(s), int(d)] for n, s, d in outputs],
            "profiles": [{k: [list(s) for s in v] for k, v in p.items()} for p in profiles],
            "plugins": False, "kernel": kernel}
    text = json.dumps(meta).encode()
    return _header(__version__) + struct.pack("<Q", len(text)) + text


# -- running --------------------------------------------------------------------------------------------------


class Runtime:
    def __init__(self, logger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, data: bytes):
        data = bytes(data)
        if len(data) < 36 or struct.unpack_from("<I", data)[0] != _MAGIC:
            self.logger.log(ILogger.Severity.ERROR, "IRuntime::deserializeCudaEngine: Error Code 1: Serialization "
                                                    "(Serialization assertion magicTagRead == kMAGIC_TAG failed.)")
            return None
        built = ".".join(str(b) for b in data[24:27])
        if built != ".".join(__version__.split(".")[:3]):
            self.logger.log(ILogger.Severity.ERROR, f"IRuntime::deserializeCudaEngine: Error Code 1: Serialization "
                                                    f"(the plan was built by TensorRT {built})")
            return None
        (n,) = struct.unpack_from("<Q", data, 28)
        meta = json.loads(data[36:36 + n])
        if meta["plugins"] and not STATE["plugins"]:
            self.logger.log(ILogger.Severity.ERROR, "IPluginRegistry::getCreator: Error Code 4: Cannot find plugin: "
                                                    "ROIAlign_TRT, version: 1, namespace:.")
            return None
        return ICudaEngine(meta, data[36 + n:], self.logger)


class ICudaEngine:
    def __init__(self, meta: dict, onnx_bytes: bytes, logger) -> None:
        self.meta, self.onnx, self.logger = meta, onnx_bytes, logger
        self.io = [(name, shape, DataType(dt), TensorIOMode.INPUT) for name, shape, dt in meta["inputs"]]
        self.io += [(name, shape, DataType(dt), TensorIOMode.OUTPUT) for name, shape, dt in meta["outputs"]]
        self._by_name = {t[0]: t for t in self.io}

    @property
    def num_io_tensors(self) -> int:
        return len(self.io)

    @property
    def num_optimization_profiles(self) -> int:
        return len(self.meta["profiles"])

    def get_tensor_name(self, i: int) -> str:
        return self.io[i][0]

    def get_tensor_mode(self, name: str):
        return self._by_name[name][3]

    def get_tensor_dtype(self, name: str):
        return self._by_name[name][2]

    def get_tensor_shape(self, name: str) -> tuple:
        return tuple(self._by_name[name][1])

    def get_tensor_profile_shape(self, name: str, profile: int):
        return [tuple(s) for s in self.meta["profiles"][profile][name]]

    def create_execution_context(self):
        return IExecutionContext(self)


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self.engine, self.profile = engine, 0
        self.shapes: dict[str, tuple] = {}
        self.addresses: dict[str, int] = {}
        self.allocators: dict = {}
        self._session = None

    def set_optimization_profile_async(self, index: int, stream: int) -> bool:
        if STATE["refuse_profile_switch"] or not 0 <= index < self.engine.num_optimization_profiles:
            return False
        self.profile = index
        return True

    def set_input_shape(self, name: str, shape) -> bool:
        lo, _, hi = self.engine.get_tensor_profile_shape(name, self.profile)
        shape = tuple(int(d) for d in shape)
        if len(shape) != len(lo) or any(not a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return False
        self.shapes[name] = shape
        return True

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = int(ptr)
        return True

    def set_output_allocator(self, name: str, allocator) -> bool:
        self.allocators[name] = allocator
        return True

    def get_tensor_shape(self, name: str) -> tuple:
        return self.shapes.get(name, self.engine.get_tensor_shape(name))

    @staticmethod
    def _stream_object(cudart, handle: int):
        """The binding's stream object for an integer handle (the input copies were queued on it)."""
        try:
            return cudart.cudaStream_t(handle)
        except TypeError:  # the host-memory stand-in: copies are synchronous anyway
            return cudart.cudaStream_t()

    def _compute(self, feeds: dict) -> dict:
        kernel = self.engine.meta.get("kernel")
        if kernel:
            return KERNELS[kernel](feeds)
        import onnxruntime as ort

        if self._session is None:
            self._session = ort.InferenceSession(self.engine.onnx, providers=["CPUExecutionProvider"])
        names = [o.name for o in self._session.get_outputs()]
        return dict(zip(names, self._session.run(None, feeds)))

    def execute_async_v3(self, stream_handle) -> bool:
        from ltdeploy.gpu.cuda import call, runtime

        if not isinstance(stream_handle, int):
            raise TypeError("execute_async_v3(): incompatible function arguments (stream_handle: int)")
        STATE["execute_threads"].append(threading.get_ident())
        STATE["streams"].append(stream_handle)
        for _ in range(STATE["warnings_on_execute"]):
            self.engine.logger.log(ILogger.Severity.WARNING, "fake TensorRT: a warning while executing")
        cudart = runtime()
        kinds = cudart.cudaMemcpyKind
        call(cudart.cudaStreamSynchronize(self._stream_object(cudart, stream_handle)))
        feeds = {}
        for name, _, dtype, mode in self.engine.io:
            if mode != TensorIOMode.INPUT:
                continue
            host = np.empty(self.shapes[name], nptype(dtype))
            call(cudart.cudaMemcpy(host.ctypes.data, self.addresses[name], host.nbytes,
                                   kinds.cudaMemcpyDeviceToHost))
            feeds[name] = host
        for name, value in self._compute(feeds).items():
            value = np.ascontiguousarray(value, nptype(self.engine.get_tensor_dtype(name)))
            alloc = self.allocators.get(name)
            if alloc is None:
                return False
            ptr = alloc.reallocate_output_async(name, 0, value.nbytes, 256, stream_handle)
            if value.nbytes and not ptr:
                return False
            if value.nbytes:
                call(cudart.cudaMemcpy(int(ptr), value.ctypes.data, value.nbytes, kinds.cudaMemcpyHostToDevice))
            alloc.notify_shape(name, tuple(value.shape))
            self.shapes[name] = tuple(value.shape)
        call(cudart.cudaDeviceSynchronize())  # the copies above ran on the legacy stream, not the caller's
        return True
