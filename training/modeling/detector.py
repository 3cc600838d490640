"""Faster R-CNN / Mask R-CNN (torchvision) with our RoI box branch: MobileNetV3-FPN for CPU, ResNet-50-FPN."""
from __future__ import annotations

import copy

from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone, resnet_fpn_backbone
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from training.modeling.det_heads import LTRoIHeads, RoIBoxBranch
from training.modeling.two_stage import TwoStageModel

DET_BODIES = ("mobilenet_v3_fpn", "resnet50_fpn")
DETECTIONS_PER_IMAGE = 300  # LVIS evaluation
SCORE_THRESHOLD = 1e-4


def _backbone(body: str) -> nn.Module:
    # trained from scratch here, so real BatchNorm (torchvision's default FrozenBatchNorm suits pretrained bodies)
    if body == "mobilenet_v3_fpn":
        return mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True, trainable_layers=6,
                                  norm_layer=nn.BatchNorm2d)
    if body == "resnet50_fpn":
        return resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=5,
                                   norm_layer=nn.BatchNorm2d)
    raise ValueError(f"unknown detector body {body!r}; choose from {', '.join(DET_BODIES)}")


def build_detector(body: str, num_classes: int, masks: bool = False, head: str = "linear", passes: int = 1,
                   pcb: bool = False, image_size: int = 128, rois_per_image: int = 128,
                   representation: int = 256) -> nn.Module:
    """A detector for `num_classes` foreground classes (labels 1..K), images resized to `image_size`.

    All RPN candidates reach per-class NMS: torchvision keeps every (box, class) score above 1e-4 before
    NMS, so rare classes are never cut by a pre-NMS cap; 300 detections per image are kept after it.
    """
    backbone = _backbone(body)
    names = ["0", "1", "pool"] if body == "mobilenet_v3_fpn" else ["0", "1", "2", "3"]
    levels = len(names) if body == "mobilenet_v3_fpn" else 5
    anchors = AnchorGenerator(((16, 32, 64, 128, 256),) * levels if body == "mobilenet_v3_fpn"
                              else tuple((s,) for s in (16, 32, 64, 128, 256)), ((0.5, 1.0, 2.0),) * levels)
    resolution = 7
    branch = RoIBoxBranch(backbone.out_channels, resolution, num_classes + 1, representation, head, passes)
    common = dict(min_size=image_size, max_size=image_size, rpn_anchor_generator=anchors,
                  box_roi_pool=MultiScaleRoIAlign(names[:-1] if body == "mobilenet_v3_fpn" else names,
                                                  resolution, 2),
                  box_head=nn.Identity(), box_predictor=branch, box_batch_size_per_image=rois_per_image,
                  box_detections_per_img=DETECTIONS_PER_IMAGE, box_score_thresh=SCORE_THRESHOLD)
    if masks:
        model = MaskRCNN(backbone, num_classes=None,
                         mask_predictor=MaskRCNNPredictor(256, 256, num_classes + 1), **common)
    else:
        model = FasterRCNN(backbone, num_classes=None, **common)
    LTRoIHeads.adopt(model.roi_heads, num_classes + 1, pcb)
    return model


class LTDetector(TwoStageModel):
    """A torchvision detector plus the two-stage interface: `arch` rebuilds it, `calibrator` is the
    DisAlign of its box predictor, and stage 2 freezes everything else."""

    def __init__(self, **arch) -> None:
        super().__init__()
        self.arch = {"task": "detection", **arch}
        self.net = build_detector(**arch)

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
        """Everything but the calibrator (which lives inside the predictor)."""
        inside = {id(m) for m in self.calibrator.modules()} if self.calibrator is not None else set()
        return [m for m in self.net.modules() if id(m) not in inside and not list(m.children())]

    def folded(self, mode: str = "affine") -> "LTDetector":
        """A copy with the calibration folded into the last pass's classifier (for export)."""
        model = copy.deepcopy(self).eval()
        model.branch.fold(mode)
        return model

    def forward(self, images, targets=None):
        """torchvision's detector forward: losses in training, detections in eval."""
        return self.net(images, targets)
