"""Training augmentation as torchvision.transforms.v2 pipelines, built from the specs recipes carry
({"name": "RandomResizedCrop", "size": 224}, ...). A sample's boxes and masks are wrapped as tv_tensors, so
every geometric transform moves them with the image; evaluation never goes through here (it keeps the
runtime's one preprocessing). torchvision is imported on first use: a run without transforms never pays for it
(a classification process otherwise imports no torchvision at all)."""
from __future__ import annotations

import inspect
from typing import Sequence

import numpy as np
import torch

from ltdeploy.errors import LtDeployError
from ltdeploy.preprocess import PreprocessConfig, normalize
from training.core.bad_images import BadImage


class TransformSpecError(LtDeployError):
    """A transform spec names no torchvision v2 transform, or gives it arguments it does not take."""


def build_transforms(specs: Sequence[dict], label_fill: int | None = None):
    """The v2 pipeline the specs describe, in order (None for no specs). `label_fill` is what padding writes
    into label maps (segmentation: the ignore label) where a spec sets no `fill` of its own."""
    if not specs:
        return None
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    steps = []
    for spec in specs:
        spec = dict(spec)
        name = spec.pop("name", None)
        cls = getattr(v2, name, None) if isinstance(name, str) else None
        if not (isinstance(cls, type) and issubclass(cls, v2.Transform)):
            raise TransformSpecError(f"transform {name!r}: not a torchvision.transforms.v2 transform")
        args = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
        if label_fill is not None and "fill" not in args and "fill" in inspect.signature(cls).parameters:
            args["fill"] = {tv_tensors.Image: 0, tv_tensors.Mask: label_fill}
        try:
            steps.append(cls(**args))
        except (TypeError, ValueError) as exc:
            raise TransformSpecError(f"transform {name}({', '.join(f'{k}={v!r}' for k, v in args.items())}): "
                                     f"{exc}") from None
    return v2.Compose(steps)


def augment_image(transforms, rgb: np.ndarray, pre: PreprocessConfig) -> torch.Tensor:
    """A decoded RGB uint8 image (H, W, 3) augmented by a `build_transforms` pipeline and mapped to the model's
    values (3, h, w), which must be the model's input size (the pipeline's crop or resize sets it)."""
    from torchvision import tv_tensors

    out = transforms(tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)))
    return to_model_values(out, pre)


def to_model_values(image: torch.Tensor, pre: PreprocessConfig) -> torch.Tensor:
    """An augmented uint8 image (3, h, w) at the input size through the runtime's value mapping."""
    if tuple(image.shape[-2:]) != tuple(pre.input_size):
        raise TransformSpecError(f"the training transforms give {tuple(image.shape[-2:])} images but the model takes "
                                 f"{tuple(pre.input_size)}: end them with a crop or resize to the input size")
    return torch.from_numpy(normalize(image.permute(1, 2, 0).numpy(), pre))


def augment_detection(transforms, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    """An image (3, H, W) and its torchvision detection target, transformed together: boxes (xyxy) and masks
    follow every crop, resize and flip; boxes left empty are dropped with their labels and masks."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    h, w = image.shape[-2:]
    sample = {"boxes": tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(h, w)),
              "labels": target["labels"]}
    if "masks" in target:
        sample["masks"] = tv_tensors.Mask(target["masks"])
    out_image, out = transforms(tv_tensors.Image(image), sample)
    out = v2.SanitizeBoundingBoxes(min_size=1)(out)
    result = {**target, "boxes": out["boxes"].as_subclass(torch.Tensor), "labels": out["labels"]}
    if "masks" in out:
        result["masks"] = out["masks"].as_subclass(torch.Tensor)
    return out_image.as_subclass(torch.Tensor), result


def augment_segmentation(transforms, image: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An image (3, H, W) and its label map (H, W), transformed together (the map resized nearest)."""
    from torchvision import tv_tensors

    out_image, out_labels = transforms(tv_tensors.Image(image), tv_tensors.Mask(labels))
    return out_image.as_subclass(torch.Tensor), out_labels.as_subclass(torch.Tensor)


class AugmentedDetection(torch.utils.data.Dataset):
    """A detection training set whose samples (already at the model's scale, as the detector takes them) go
    through the recipe's geometric transforms, boxes and masks with them."""

    def __init__(self, dataset: torch.utils.data.Dataset, transforms) -> None:
        self.dataset, self.transforms = dataset, transforms

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[index]
        if isinstance(item, BadImage):
            return item
        return augment_detection(self.transforms, *item)
