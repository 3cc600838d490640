"""Segmentation feature extractors: name → builder returning (module mapping N x 3 x H x W to the decoder
feature N x C x h x w, C). The per-pixel classifier (and the calibration) run on that feature.

torchvision's heads end in 1x1 classifier convolutions; the bodies here stop just before them, so the
stage-1 classifier is one 1x1 conv that DisAlign can calibrate and the export can fold. LR-ASPP sums two
classifiers (on the low-level feature and on the upsampled context); that equals one conv on their
concatenation, which is the feature returned here.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ltdeploy.errors import ModelError


def _cbr(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallSegNet(nn.Module):
    """A small encoder (stride 4, dilated context) with a stride-2 skip: trains in minutes on 2 CPU cores."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(_cbr(3, w), _cbr(w, w), nn.MaxPool2d(2), _cbr(w, 2 * w))  # stride 2
        self.context = nn.Sequential(nn.MaxPool2d(2), _cbr(2 * w, 4 * w), _cbr(4 * w, 4 * w, 2),
                                     _cbr(4 * w, 4 * w, 4))  # stride 4
        self.fuse = _cbr(6 * w, 2 * w)
        self.out_channels = 2 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder feature at stride 2."""
        low = self.stem(x)
        ctx = F.interpolate(self.context(low), size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([low, ctx], 1))


class BeforeClassifier(nn.Module):
    """torchvision FCN / DeepLabV3 up to (not including) the final 1x1 classifier."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.decoder = nn.Sequential(*list(model.classifier.children())[:-1])
        self.out_channels = model.classifier[-1].in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder feature (stride 8 for ResNets, 16 for MobileNetV3)."""
        return self.decoder(self.backbone(x)["out"])


class LRASPPFeature(nn.Module):
    """LR-ASPP's decoder: [low-level feature; upsampled (context * attention)] at stride 8."""

    def __init__(self, backbone: nn.Module, low_channels: int, high_channels: int, inter: int = 128) -> None:
        super().__init__()
        self.backbone = backbone
        self.cbr = nn.Sequential(nn.Conv2d(high_channels, inter, 1, bias=False), nn.BatchNorm2d(inter),
                                 nn.ReLU(inplace=True))
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(high_channels, inter, 1, bias=False),
                                   nn.Sigmoid())
        self.out_channels = low_channels + inter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenated decoder feature at the low-level feature's stride."""
        feats = self.backbone(x)
        low, high = (feats["low"], feats["high"]) if isinstance(feats, dict) else feats
        ctx = self.cbr(high) * self.scale(high)
        ctx = F.interpolate(ctx, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([low, ctx], 1)


def _no_pretrained(name: str, pretrained: bool) -> None:
    if pretrained:
        raise ModelError(f"{name}: no offline ImageNet weights ship here; train from scratch, pass --weights FILE "
                         "or use lraspp_lite0 --pretrained")


def _small(pretrained: bool) -> nn.Module:
    _no_pretrained("small_seg", pretrained)
    return SmallSegNet()


def torchvision_segmenter(name: str, num_classes: int, aux_loss: bool = False) -> nn.Module:
    """torchvision's whole segmentation model `name` (random weights), as its own weights files fit."""
    from torchvision.models import segmentation

    if name not in TORCHVISION_SEGMENTERS:
        raise ModelError(f"tv:{name}: not one of torchvision's segmenters ({', '.join(TORCHVISION_SEGMENTERS)})")
    extra = {} if name.startswith("lraspp") else {"aux_loss": aux_loss}
    return getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=num_classes, **extra)


def body_of(name: str, model: nn.Module) -> nn.Module:
    """The body of a torchvision segmenter: everything before its final 1x1 classifier(s), sharing modules."""
    if name.startswith("lraspp"):
        head = model.classifier
        body = LRASPPFeature(model.backbone, head.low_classifier.in_channels, head.cbr[0].in_channels,
                             head.cbr[0].out_channels)
        body.cbr, body.scale = head.cbr, head.scale
        return body
    return BeforeClassifier(model)


def classifier_of(name: str, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight K x C, bias K) of a torchvision segmenter's final classifier; LR-ASPP's two summed 1x1 convs are one
    conv on the body's concatenated feature."""
    if name.startswith("lraspp"):
        low, high = model.classifier.low_classifier, model.classifier.high_classifier
        return torch.cat([low.weight, high.weight], 1).flatten(1), low.bias + high.bias
    conv = model.classifier[-1]
    return conv.weight.flatten(1), conv.bias


def _torchvision(name: str) -> Callable[[bool], nn.Module]:
    def build(pretrained: bool) -> nn.Module:
        _no_pretrained(name, pretrained)
        return body_of(name, torchvision_segmenter(name, 2))
    return build


class TimmLRASPP(LRASPPFeature):
    """LR-ASPP on any timm model's features (`features_only`): the stride-8 feature as the low level and the
    deepest one as context, their strides read from `feature_info`."""

    def __init__(self, name: str, pretrained: bool = False) -> None:
        import timm

        if not timm.is_model(name):
            raise ModelError(f"timm:{name}: timm has no model {name!r} (see timm.list_models())")
        probe = timm.create_model(name, features_only=True)
        strides = probe.feature_info.reduction()
        if 8 not in strides:
            raise ModelError(f"timm:{name}: no stride-8 feature (strides {strides}); LR-ASPP needs one")
        indices = (strides.index(8), len(strides) - 1)
        if pretrained:
            from training.core.libraries import download
            net = download(f"timm:{name}", lambda: timm.create_model(name, pretrained=True, features_only=True,
                                                                       out_indices=indices))
        else:
            net = timm.create_model(name, features_only=True, out_indices=indices)
        low, high = net.feature_info.channels()
        super().__init__(net, low, high)


def _lraspp_lite0(pretrained: bool) -> nn.Module:
    """LR-ASPP on EfficientNet-Lite0 (strides 8 and 32), with the real ImageNet weights when pretrained."""
    import timm

    from training.classification.backbones import lite0_imagenet_state

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(2, 4))
    if pretrained:
        own = net.state_dict()
        state = {k: v for k, v in lite0_imagenet_state().items() if k in own}
        missing = set(own) - set(state)
        if missing:
            raise ValueError(f"lraspp_lite0: {len(missing)} backbone weights missing, e.g. {sorted(missing)[0]}")
        net.load_state_dict(state, strict=True)
    low, high = net.feature_info.channels()
    return LRASPPFeature(net, low, high)


TORCHVISION_SEGMENTERS = ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "fcn_resnet50",
                          "deeplabv3_resnet50", "fcn_resnet101", "deeplabv3_resnet101")
SPEC_PREFIXES = ("timm:", "tv:")
SEG_BODIES: dict[str, Callable[[bool], nn.Module]] = {
    "small_seg": _small,
    **{name: _torchvision(name) for name in TORCHVISION_SEGMENTERS[:4]},
    "lraspp_lite0": _lraspp_lite0,
}

# The eval transform per model: (input size, interpolation, mean, std); images resize straight to the size.
SEG_PREPROCESS = {
    "small_seg": (64, "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "lraspp_lite0": (512, "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "torchvision": (512, "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def build_seg_body(name: str, pretrained: bool = False) -> tuple[nn.Module, int]:
    """Build a segmentation body from its spec (a name below, tv:NAME or timm:NAME); returns (module, decoder
    feature channels C)."""
    if name.startswith("timm:"):
        body = TimmLRASPP(name[len("timm:"):], pretrained)
    elif name.startswith("tv:"):
        _no_pretrained(name, pretrained)
        body = body_of(name[len("tv:"):], torchvision_segmenter(name[len("tv:"):], 2))
    elif name in SEG_BODIES:
        body = SEG_BODIES[name](pretrained)
    else:
        raise ModelError(f"unknown segmentation model {name!r}; choose from {', '.join(SEG_BODIES)}, tv:NAME or "
                         "timm:NAME")
    return body, body.out_channels


def seg_preprocess_defaults(spec: str) -> tuple[int, str, tuple, tuple]:
    """(input size, interpolation, mean, std) of a segmentation model: a timm body's own normalisation."""
    if spec.startswith("timm:"):
        from timm.data import resolve_data_config
        from timm.models import get_pretrained_cfg

        found = get_pretrained_cfg(spec[len("timm:"):])
        cfg = resolve_data_config({}, pretrained_cfg=found.to_dict() if found else {})
        return 512, "bilinear", tuple(cfg["mean"]), tuple(cfg["std"])
    return SEG_PREPROCESS.get(spec, SEG_PREPROCESS["torchvision"])
