"""TensorRT plan files: the header check and the description file beside the plan (`<plan>.json`).

The plan itself stays byte-identical to what trtexec and Triton write and read. Everything ltdeploy
needs (the model description, the TensorRT version and GPU that built it, precision, profiles, the
sha256 of the ONNX it came from and of the plan) sits in the JSON beside it. No tensorrt import here:
these checks run before TensorRT is touched, and on machines without it.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import asdict, dataclass, field

from ltdeploy.errors import EngineError, MetadataError
from ltdeploy.files import atomic_path, file_sha256
from ltdeploy.metadata import ModelDescription

PLAN_MAGIC = 0x74727466  # "ftrt" little-endian: the first uint32 of every serialized engine
BUILD_SCHEMA = "ltdeploy.gpu.plan/1"


@dataclass(frozen=True)
class PlanHeader:
    """What the first 28 bytes of a plan say.

    Not a documented format: it is what trtexec's own source reads for `--getPlanVersionOnly` (from
    TensorRT 9.1 on): the magic, a zero word, and at bytes 24..27 major, minor, patch and build. trtexec
    warns that the place may depend on the serialization layout, so a plan whose second word is not 0
    is reported as a layout this ltdeploy does not know, not as "not a plan"."""

    version: tuple[int, int, int, int]  # major, minor, patch, build

    @property
    def version_string(self) -> str:
        """'10.13.2' (the build number is left off, as TensorRT prints it)."""
        return ".".join(str(v) for v in self.version[:3])


def read_plan_header(path: str) -> PlanHeader:
    """Read and check the plan header without deserializing (what `trtexec --getPlanVersionOnly` reads)."""
    try:
        with open(path, "rb") as f:
            head = f.read(28)
    except OSError as exc:
        raise EngineError(f"{path}: cannot read the plan ({exc.strerror})") from None
    if len(head) < 28:
        raise EngineError(f"{path}: {len(head)} bytes is too short for a TensorRT plan")
    magic, layout = struct.unpack_from("<II", head, 0)
    if magic != PLAN_MAGIC:
        raise EngineError(f"{path}: not a TensorRT plan (bad header {head[:8].hex()}); "
                          "was it written with a prefix or by another tool?")
    if layout != 0:
        raise EngineError(f"{path}: a TensorRT plan in a serialization layout this ltdeploy cannot read the "
                          f"version from (word 2 is {layout}); a newer TensorRT may have written it: update "
                          "ltdeploy, or rebuild the plan with the TensorRT installed here")
    version = tuple(head[24:28])
    if version[0] not in (10, 11):
        raise EngineError(f"{path}: plan header gives TensorRT {'.'.join(map(str, version))}; ltdeploy runs plans "
                          "of TensorRT 10 and 11 (rebuild it with `ltdeploy build`)")
    return PlanHeader(version)  # type: ignore[arg-type]


def description_path(plan: str) -> str:
    """Where the description of `plan` lives: `model.trt` → `model.trt.json`."""
    return plan + ".json"


@dataclass(frozen=True)
class TensorSpec:
    """One I/O tensor of an engine: name, 'input'/'output', numpy dtype name, shape (-1 = dynamic)."""

    name: str
    mode: str
    dtype: str
    shape: list[int]


@dataclass(frozen=True)
class BuildInfo:
    """How a plan was built, and on what. Stored beside the plan with the model description."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.9"
    precision: str  # "fp32" | "fp16" | "int8"
    profiles: list[dict[str, list[list[int]]]]  # per profile: input name -> [min, opt, max] shapes
    tensors: list[TensorSpec]
    onnx_sha256: str
    plan_sha256: str
    cuda_runtime: str = ""
    driver: str = ""
    extra: dict = field(default_factory=dict)

    def max_batch(self) -> int:
        """The largest batch any profile accepts (1 for a static graph)."""
        return max((shapes[2][0] for p in self.profiles for shapes in p.values()), default=1)

    def batch_dynamic(self) -> bool:
        """Whether the plan's inputs take a variable batch."""
        return any(t.mode == "input" and t.shape[0] == -1 for t in self.tensors)


def write_plan_description(plan: str, description: ModelDescription, build: BuildInfo) -> str:
    """Write `<plan>.json` (atomically) and return its path."""
    path = description_path(plan)
    doc = {"schema": BUILD_SCHEMA, "model": description.to_dict(), "build": asdict(build)}
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    return path


def read_plan_description(plan: str) -> tuple[ModelDescription, BuildInfo]:
    """Read `<plan>.json`: the model description and how the plan was built."""
    path = description_path(plan)
    if not os.path.isfile(path):
        raise MetadataError(f"{plan}: no description beside the plan (expected {os.path.basename(path)}); "
                            "build plans with `ltdeploy build`, or write it for a trtexec-built plan")
    try:
        with open(path) as f:
            doc = json.load(f)
        if doc.get("schema") != BUILD_SCHEMA:
            raise MetadataError(f"{path}: schema {doc.get('schema')!r}, this ltdeploy reads {BUILD_SCHEMA}")
        b = dict(doc["build"])
        b["tensors"] = [TensorSpec(**t) for t in b["tensors"]]
        build = BuildInfo(**b)
    except MetadataError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise MetadataError(f"{path}: malformed plan description ({type(exc).__name__}: {exc})") from None
    return ModelDescription.from_dict(doc["model"], source=path), build


def check_plan(plan: str, tensorrt_version: str, compute_capability: str | None,
               gpu_name: str | None = None) -> tuple[ModelDescription, BuildInfo]:
    """Refuse, with one line, a plan that the installed TensorRT or this GPU cannot run.

    A plan runs only on the TensorRT build and GPU model that made it (two GPUs of one compute capability
    still differ in SM count and memory, which the tactics were timed for); deserializing a mismatched one
    fails with the reason only in TensorRT's log, so check the header and the recorded build first.
    """
    header = read_plan_header(plan)
    description, build = read_plan_description(plan)
    installed = tuple(int(v) for v in tensorrt_version.split(".")[:3] if v.isdigit())
    if header.version[:3] != installed[:3]:
        raise EngineError(f"{plan}: built by TensorRT {header.version_string}, this machine has TensorRT "
                          f"{tensorrt_version}; rebuild it here with `ltdeploy build`")
    if build.tensorrt_version.split(".")[:3] != header.version_string.split("."):
        raise EngineError(f"{plan}: the plan header says TensorRT {header.version_string} but its description "
                          f"says {build.tensorrt_version}; the two files do not belong together")
    if build.plan_sha256 and file_sha256(plan) != build.plan_sha256:
        raise EngineError(f"{plan}: its sha256 differs from the one in {os.path.basename(description_path(plan))}; "
                          "the plan was changed or replaced after it was built")
    if compute_capability is not None and build.compute_capability != compute_capability:
        raise EngineError(f"{plan}: built for a GPU of compute capability {build.compute_capability} "
                          f"({build.gpu_name}), this GPU is {compute_capability}; rebuild it here")
    if gpu_name is not None and build.gpu_name != gpu_name:
        raise EngineError(f"{plan}: built on {build.gpu_name}, this GPU is {gpu_name}; a plan runs only on the GPU "
                          "model that built it: rebuild it here")
    return description, build
