"""The model's self-description: one versioned JSON value stored in the ONNX metadata (key `ltdeploy`)
and in `<plan>.json` beside a TensorRT plan. Parsed strictly."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from ltdeploy.errors import MetadataError
from ltdeploy.preprocess import PreprocessConfig
from ltdeploy.tasks import task_spec

SCHEMA = "ltdeploy.model/2"
# /1 had no class ids and no `resize` in its preprocessing; its classifiers and segmenters read the same
# way, but its detectors squashed every image to a square, so those must be exported again.
LEGACY_SCHEMA = "ltdeploy.model/1"
METADATA_KEY = "ltdeploy"
# The neutral names of the frequency groups (above the first threshold, between, below the second); each task
# names them its own way (ltdeploy.tasks: ADE20K's head / body / tail, LVIS's frequent / common / rare).
NEUTRAL_GROUPS = ("many", "medium", "few")


@dataclass(frozen=True)
class ModelDescription:
    """Everything a runtime needs to use a model, and what a person needs to trust it.

    class_counts are training images (classification, detection) or pixels (segmentation) per class; groups
    name each class's frequency group (many / medium / few, head / body / tail, frequent / common / rare)
    under `group_thresholds` = (above, below). class_ids are the dataset's own ids of the classes (COCO's
    sparse category ids, ADE20K's 1..150), in class-index order; results report them.
    """

    task: str
    class_names: list[str]
    class_counts: list[int]
    group_thresholds: tuple[int, int]
    preprocess: PreprocessConfig
    input_name: str
    output_names: list[str]
    calibration: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    class_ids: list[int] = field(default_factory=list)  # empty → 0..K-1 (detection: 1..K)
    postprocess: dict = field(default_factory=dict)  # detection: score threshold, candidate caps, NMS, masks
    precision: dict = field(default_factory=dict)  # empty: fp32; INT8: format, method, calibration set

    def __post_init__(self) -> None:
        spec = task_spec(self.task)
        if not self.class_ids:
            first = spec.first_class_id
            object.__setattr__(self, "class_ids", list(range(first, first + len(self.class_names))))
        if len(self.class_ids) != len(self.class_names) or len(set(self.class_ids)) != len(self.class_ids):
            raise MetadataError(f"{len(self.class_ids)} class ids for {len(self.class_names)} classes, or repeated "
                                "ids")
        if len(self.class_names) != len(self.class_counts):
            raise MetadataError(f"{len(self.class_names)} class names but {len(self.class_counts)} class counts")
        if not self.class_names:
            raise MetadataError("the model has no classes")

    @property
    def num_classes(self) -> int:
        """K, the number of classes."""
        return len(self.class_names)

    @property
    def group_names(self) -> tuple[str, str, str]:
        """This task's names of the three frequency groups, most frequent first."""
        return task_spec(self.task).group_names

    @property
    def groups(self) -> list[str]:
        """Frequency group of each class: 'many' / 'medium' / 'few' (segmentation: 'head' / 'body' / 'tail')."""
        many, few = self.group_thresholds
        rename = dict(zip(NEUTRAL_GROUPS, self.group_names))
        return [rename[frequency_group(n, many, few)] for n in self.class_counts]

    def to_dict(self) -> dict:
        """Plain JSON-ready dict with the schema tag first."""
        return {"schema": SCHEMA, "task": self.task, "class_names": list(self.class_names),
                "class_ids": [int(i) for i in self.class_ids], "class_counts": [int(n) for n in self.class_counts],
                "group_thresholds": list(self.group_thresholds), "groups": self.groups,
                "preprocess": self.preprocess.to_dict(), "input_name": self.input_name,
                "output_names": list(self.output_names), "calibration": self.calibration,
                "provenance": self.provenance, "postprocess": self.postprocess,
                **({"precision": self.precision} if self.precision else {})}

    def to_json(self) -> str:
        """Compact JSON text."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict, source: str = "model") -> "ModelDescription":
        """Parse strictly: the schema must match, every field is required, unknown keys are rejected."""
        if not isinstance(data, dict):
            raise MetadataError(f"{source}: description must be a JSON object")
        legacy = data.get("schema") == LEGACY_SCHEMA
        if data.get("schema") != SCHEMA and not legacy:
            raise MetadataError(f"{source}: description schema is {data.get('schema')!r}, this ltdeploy "
                                f"reads {SCHEMA!r}; re-export the model with a matching ltdeploy")
        if legacy and data.get("task") == "detection":
            raise MetadataError(f"{source}: a detector written by an older ltdeploy ({LEGACY_SCHEMA}), whose graph "
                                "squashes images to a square; re-export it from its checkpoint with "
                                "`python export/to_onnx.py`")
        fields = {"schema", "task", "class_names", "class_counts", "group_thresholds", "groups", "preprocess",
                  "input_name", "output_names", "calibration", "provenance"} | (set() if legacy else {"class_ids"})
        missing, unknown = fields - data.keys(), data.keys() - fields - {"postprocess", "precision"}
        if missing or unknown:
            raise MetadataError(f"{source}: description is missing {sorted(missing)} / has unknown "
                                f"{sorted(unknown)}")
        try:
            desc = cls(task=str(data["task"]), class_names=[str(n) for n in data["class_names"]],
                       class_counts=[int(n) for n in data["class_counts"]],
                       group_thresholds=(int(data["group_thresholds"][0]), int(data["group_thresholds"][1])),
                       preprocess=PreprocessConfig.from_dict(data["preprocess"], legacy=legacy),
                       input_name=str(data["input_name"]), output_names=[str(n) for n in data["output_names"]],
                       calibration=dict(data["calibration"]), provenance=dict(data["provenance"]),
                       class_ids=[int(i) for i in data.get("class_ids", [])],
                       postprocess=dict(data.get("postprocess", {})), precision=dict(data.get("precision", {})))
        except MetadataError as exc:
            raise MetadataError(f"{source}: {exc}") from None
        except (TypeError, ValueError, IndexError) as exc:
            raise MetadataError(f"{source}: description is malformed ({exc})") from None
        return desc

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> "ModelDescription":
        """Parse the JSON text written by `to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MetadataError(f"{source}: description is not valid JSON ({exc.msg})") from None
        return cls.from_dict(data, source)


def description_from_metadata(metadata: dict, source: str) -> ModelDescription:
    """The description in an ONNX file's metadata (key -> value, as ONNX Runtime's custom_metadata_map or
    `{p.key: p.value for p in model.metadata_props}` give it); a one-line error when there is none."""
    if METADATA_KEY not in metadata:
        raise MetadataError(f"{source}: ONNX file has no ltdeploy description in its metadata; "
                            "export it with `python export/to_onnx.py`")
    return ModelDescription.from_json(metadata[METADATA_KEY], source=source)


def frequency_group(count: int, many_above: int, few_below: int) -> str:
    """ImageNet-LT convention: many > many_above, few < few_below, medium in between (inclusive)."""
    if count > many_above:
        return "many"
    if count < few_below:
        return "few"
    return "medium"


def share_thresholds(counts: list[int], head: float = 0.01, tail: float = 0.001) -> tuple[int, int]:
    """Count thresholds equal to "share of all counts > head" and "< tail" (segmentation's pixel shares)."""
    total = sum(counts)
    return math.floor(head * total), math.ceil(tail * total)


def default_group_thresholds(counts: list[int]) -> tuple[int, int]:
    """ImageNet-LT's (100, 20) for full-size sets; for small sets, the same places on a log scale.

    ImageNet-LT spans 1280..5 images per class; 100 and 20 sit at 46% and 75% of that range in log
    space. A set whose largest class has fewer than 1000 images gets thresholds at the same fractions
    of its own log range, so that each group still holds classes.
    """
    n_max, n_min = max(counts), max(1, min(counts))
    if n_max >= 1000:
        return 100, 20
    span = n_max / n_min
    return max(1, round(n_max / span ** 0.46)), max(1, round(n_max / span ** 0.75))
