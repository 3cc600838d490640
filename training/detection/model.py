"""Faster R-CNN / Mask R-CNN (torchvision) with our RoI box branch: MobileNetV3-FPN for CPU, ResNet-50-FPN."""
from __future__ import annotations

import copy
import math
from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone, resnet_fpn_backbone
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FeaturePyramidNetwork, FrozenBatchNorm2d, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.poolers import initLevelMapper

from ltdeploy.errors import ModelError
from training.core.two_stage import TwoStageModel
from training.detection.candidate_cap import PER_CLASS_CANDIDATES, TOTAL_CANDIDATES, CandidateCap
from training.detection.heads import LTRoIHeads, RoIBoxBranch

DET_BODIES = ("lite0_fpn", "mobilenet_v3_fpn", "resnet50_fpn")
DETECTIONS_PER_IMAGE = 300  # LVIS evaluation
SCORE_THRESHOLD = 1e-4
STRIDE_PROBE = 256  # a square side every level's stride divides
# Each body's default resize (short side, long side at most): torchvision's for ResNet-50-FPN (800 / 1333)
# and for its 320-px MobileNetV3 detector; Lite0-FPN keeps det-lt's 128-px images as they are.
DET_SIZES = {"lite0_fpn": (128, 128), "mobilenet_v3_fpn": (320, 640), "resnet50_fpn": (800, 1333),
             "timm": (800, 1333)}
SPEC_PREFIXES = ("timm:",)


def timm_mean_std(name: str) -> tuple[list[float], list[float]]:
    """A timm model's normalisation, from its pretrained config (no weights loaded)."""
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    found = get_pretrained_cfg(name)
    cfg = resolve_data_config({}, pretrained_cfg=found.to_dict() if found else {})
    return list(cfg["mean"]), list(cfg["std"])


class PreResized(GeneralizedRCNNTransform):
    """torchvision's detector transform without its resize: images arrive already resized by the model's
    preprocessing description (ltdeploy.preprocess, resize 'fit'), which also maps the detections back to the
    image, so training, evaluation and the exported graph all see the runtime's own pixels. It still
    normalises, and pads each batch to a multiple of 32. Masks leave the model as the mask head's M x M
    probabilities in their boxes: `ltdeploy.masks` pastes them onto the image, for the checkpoint and the
    exported graph alike (a pasting graph holds a growing loop TensorRT cannot build)."""

    def resize(self, image: torch.Tensor, target: dict | None = None) -> tuple[torch.Tensor, dict | None]:
        """No-op: see the class docstring."""
        return image, target

    def postprocess(self, result: list[dict], image_shapes, original_image_sizes) -> list[dict]:
        """Detections as the heads give them: boxes already in the input's pixels, masks not pasted."""
        return result


class TimmFPN(nn.Module):
    """A timm model's stride-8, -16 and -32 features (`features_only`, strides read from `feature_info`) with an
    FPN on them plus a max-pooled level: fine enough for small objects at 128 px, where MobileNetV3-FPN's
    coarsest-first levels (strides 16 and 32) give a 32-px object one cell."""

    def __init__(self, name: str, pretrained: bool = False, frozen_bn: bool = False) -> None:
        super().__init__()
        import timm
        from timm.layers import freeze_batch_norm_2d

        if not timm.is_model(name):
            raise ModelError(f"timm:{name}: timm has no model {name!r} (see timm.list_models())")
        strides = timm.create_model(name, features_only=True).feature_info.reduction()
        if not {8, 16, 32} <= set(strides):
            raise ModelError(f"timm:{name}: needs stride-8, -16 and -32 features for the FPN (has {strides})")
        indices = tuple(strides.index(r) for r in (8, 16, 32))
        self.body = timm.create_model(name, features_only=True, out_indices=indices)
        if pretrained:
            self.body.load_state_dict(self._pretrained_state(name), strict=True)
        if frozen_bn:  # pretrained BatchNorm stays as trained (batches of 8 are too small to re-estimate it)
            self.body = freeze_batch_norm_2d(self.body)
        self.fpn = FeaturePyramidNetwork(self.body.feature_info.channels(), 256, extra_blocks=LastLevelMaxPool())
        self.out_channels = 256

    def _pretrained_state(self, name: str) -> dict:
        if name == "tf_efficientnet_lite0":  # the registry package's real ImageNet weights, no download
            from training.classification.backbones import lite0_imagenet_state
            return {k: v for k, v in lite0_imagenet_state().items() if k in self.body.state_dict()}
        import timm

        from training.core.libraries import download
        return download(f"timm:{name}", lambda: timm.create_model(name, pretrained=True, features_only=True,
                                                                    out_indices=self.body.feature_info.out_indices)
                        ).state_dict()

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """Images (N, 3, H, W) → FPN levels '0' (stride 8), '1', '2', 'pool'."""
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))


def _backbone(body: str, pretrained: bool = False, frozen_bn: bool = False) -> nn.Module:
    if body == "lite0_fpn":
        return TimmFPN("tf_efficientnet_lite0", pretrained, frozen_bn)
    if body.startswith("timm:"):
        return TimmFPN(body[len("timm:"):], pretrained, frozen_bn)
    if pretrained:
        raise ModelError(f"{body}: no offline ImageNet weights ship here; train from scratch or use lite0_fpn "
                         "--pretrained")
    # trained from scratch here, so real BatchNorm; torchvision's FrozenBatchNorm for imported trained weights
    norm = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
    if body == "mobilenet_v3_fpn":
        return mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True, trainable_layers=6,
                                  norm_layer=norm)
    if body == "resnet50_fpn":
        return resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=5, norm_layer=norm)
    raise ValueError(f"unknown detector body {body!r}; choose from {', '.join(DET_BODIES)}")


def build_detector(body: str, num_classes: int, masks: bool = False, head: str = "linear", passes: int = 1,
                   pcb: bool = False, rois_per_image: int = 128, representation: int = 256,
                   pretrained: bool = False, detections_per_image: int = DETECTIONS_PER_IMAGE,
                   candidates_per_class: int = PER_CLASS_CANDIDATES,
                   candidates: int = TOTAL_CANDIDATES, frozen_bn: bool = False,
                   anchor_sizes: list[list[int]] | None = None) -> nn.Module:
    """A detector for `num_classes` foreground classes (labels 1..K) on images already resized (PreResized).

    (box, class) pairs above 1e-4 reach the per-class NMS through an explicit cap (per class, then in
    total: training.detection.candidates) that every runtime shares; 300 detections per image are kept after.
    """
    backbone = _backbone(body, pretrained, frozen_bn)
    if body == "mobilenet_v3_fpn":  # levels '0', '1', 'pool'; torchvision's own anchor layout for it
        pooled, sizes = ["0", "1"], ((16, 32, 64, 128, 256),) * 3
    elif body == "lite0_fpn" or body.startswith("timm:"):  # strides 8, 16, 32, 64
        pooled, sizes = ["0", "1", "2"], ((16,), (32,), (64,), (128,))
    else:  # ResNet-50-FPN: strides 4..64
        pooled, sizes = ["0", "1", "2", "3"], ((16,), (32,), (64,), (128,), (256,))
    if anchor_sizes is not None:  # an imported detector's own (torchvision's: 32..512 on ResNet-50-FPN)
        sizes = tuple(tuple(level) for level in anchor_sizes)
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    resolution = 7
    branch = RoIBoxBranch(backbone.out_channels, resolution, num_classes + 1, representation, head, passes)
    norm = dict(image_mean=[0.5] * 3, image_std=[0.5] * 3) if body == "lite0_fpn" else {}  # as Lite0 was trained
    if body.startswith("timm:"):  # the timm model's own normalisation
        norm = dict(zip(("image_mean", "image_std"), timm_mean_std(body[len("timm:"):])))
    common = dict(rpn_anchor_generator=anchors, **norm,
                  box_roi_pool=MultiScaleRoIAlign(pooled, resolution, 2),
                  box_head=nn.Identity(), box_predictor=branch, box_batch_size_per_image=rois_per_image,
                  box_detections_per_img=detections_per_image, box_score_thresh=SCORE_THRESHOLD)
    if masks:
        model = MaskRCNN(backbone, num_classes=None,
                         mask_predictor=MaskRCNNPredictor(256, 256, num_classes + 1), **common)
    else:
        model = FasterRCNN(backbone, num_classes=None, **common)
    LTRoIHeads.adopt(model.roi_heads, num_classes + 1, pcb, cap=CandidateCap(candidates_per_class, candidates))
    model.transform = PreResized(1, 1, model.transform.image_mean, model.transform.image_std)
    fix_roi_scales(model)
    return model


@torch.no_grad()
def fix_roi_scales(model: nn.Module) -> None:
    """Give each RoI pooler its levels' true scales (1 / stride), measured once on a probe image.

    torchvision's MultiScaleRoIAlign infers them from the first batch it pools and keeps them: a small or
    odd-sized first image can round a level to the wrong scale, and a resumed run, an evaluation and an
    export would each infer their own from whatever they saw first.
    """
    training = model.backbone.training
    features = model.backbone.eval()(torch.zeros(1, 3, STRIDE_PROBE, STRIDE_PROBE))
    model.backbone.train(training)
    poolers = [model.roi_heads.box_roi_pool, getattr(model.roi_heads, "mask_roi_pool", None)]
    for pooler in filter(None, poolers):
        scales = [features[name].shape[-1] / STRIDE_PROBE for name in pooler.featmap_names if name in features]
        pooler.scales = scales
        pooler.map_levels = initLevelMapper(round(-math.log2(scales[0])), round(-math.log2(scales[-1])),
                                            canonical_scale=pooler.canonical_scale,
                                            canonical_level=pooler.canonical_level)


class LTDetector(TwoStageModel):
    """A torchvision detector plus the two-stage interface: `arch` rebuilds it, `calibrator` is the
    DisAlign of its box predictor, and stage 2 freezes everything else."""

    def __init__(self, pretrained: bool = False, **arch) -> None:
        super().__init__()
        # the arch rebuilds the network; `pretrained` only fills it with weights, so it is not part of it
        self.arch = {"task": "detection", **arch}
        self.net = build_detector(pretrained=pretrained, **arch)

    @property
    def branch(self) -> RoIBoxBranch:
        """The RoI box branch (all PCB passes, the predictor, the calibrator)."""
        return self.net.roi_heads.box_predictor

    @property
    def calibrator(self) -> nn.Module | None:  # type: ignore[override]
        """Stage 2's DisAlign on the foreground logits, if any."""
        return self.branch.calibrator

    def __setattr__(self, name: str, value) -> None:
        # nn.Module.__setattr__ would register a module named "calibrator" here instead of using the property
        if name == "calibrator":
            self.branch.calibrator = value
        else:
            super().__setattr__(name, value)

    @property
    def feat_dim(self) -> int:
        """Width of the box-head representation DisAlign's confidence reads."""
        return self.branch.predictor.bbox_pred.in_features

    def stage1_modules(self) -> list[nn.Module]:
        """Everything but the calibrator (which lives inside the RoI branch)."""
        inside = {id(m) for m in self.calibrator.modules()} if self.calibrator is not None else set()
        # every module holding parameters or buffers itself: not only leaves (timm's BatchNormAct2d has
        # children and its own weight and running statistics)
        return [m for m in self.net.modules() if id(m) not in inside
                and (next(m.parameters(recurse=False), None) is not None
                     or next(m.buffers(recurse=False), None) is not None)]

    def folded(self, mode: str = "affine") -> "LTDetector":
        """A copy with the calibration folded into the last pass's classifier (for export)."""
        model = copy.deepcopy(self).eval()
        model.branch.fold(mode)
        return model

    def forward(self, images, targets=None):
        """torchvision's detector forward: losses in training, detections in eval."""
        return self.net(images, targets)
