"""`train.py import` for detectors: a torchvision Faster / Mask R-CNN ResNet-50-FPN state dict trained elsewhere
becomes stage 1, its box predictor the stage-1 head. The rebuilt detector keeps torchvision's architecture
(frozen BatchNorm, anchors 32..512, 1024-wide box head), so it gives the original model's detections."""
from __future__ import annotations

import torch

from ltdeploy.class_order import weights_order
from ltdeploy.datasets.det_sources import resolve_det_source
from ltdeploy.errors import ModelError
from training.config import Stage1Config, as_record
from training.core.checkpoint import save_checkpoint
from training.core.provenance import provenance
from training.core.weights import load_into, read_state_dict, weights_record
from training.detection.model import LTDetector

TORCHVISION_DETECTORS = {"fasterrcnn_resnet50_fpn": False, "maskrcnn_resnet50_fpn": True}  # name → masks
TORCHVISION_ANCHORS = [[32], [64], [128], [256], [512]]
# torchvision's RoI keys → ours (our RoI box branch holds the box head and the predictor)
RENAMES = (("roi_heads.box_head.", "roi_heads.box_predictor.box_head."),
           ("roi_heads.box_predictor.cls_score.", "roi_heads.box_predictor.predictor.cls_score."),
           ("roi_heads.box_predictor.bbox_pred.", "roi_heads.box_predictor.predictor.bbox_pred."))


def _ours(key: str) -> str:
    for old, new in RENAMES:
        if key.startswith(old):
            return "net." + new + key[len(old):]
    return "net." + key


def _reorder(state: dict, order: list[int]) -> dict:
    """Rows of every per-class tensor in the dataset's class order (background, row 0, stays first)."""
    rows = torch.as_tensor([0] + [1 + i for i in order])
    boxes = (rows[:, None] * 4 + torch.arange(4)).flatten()
    out = dict(state)
    for key in state:
        if key.startswith(("roi_heads.box_predictor.cls_score.", "roi_heads.mask_predictor.mask_fcn_logits.")):
            out[key] = state[key][rows]
        elif key.startswith("roi_heads.box_predictor.bbox_pred."):
            out[key] = state[key][boxes]
    return out


def imported_detector(spec: str, weights: str, class_names: list[str], classes_file: str | None) -> LTDetector:
    """The stage-1 detector holding a torchvision Faster / Mask R-CNN's weights, classes in the dataset's order."""
    name = spec[len("tv:"):] if spec.startswith("tv:") else ""
    if name not in TORCHVISION_DETECTORS:
        raise ModelError(f"--arch {spec!r}: detection imports tv:{' or tv:'.join(TORCHVISION_DETECTORS)}")
    state = read_state_dict(weights)
    key = "roi_heads.box_predictor.cls_score.weight"
    if key not in state:
        raise ModelError(f"{weights}: no {key} (the box predictor of {spec}); is it this architecture's file?")
    masks = TORCHVISION_DETECTORS[name]
    if masks != any(k.startswith("roi_heads.mask_") for k in state):
        raise ModelError(f"{weights}: {'no' if masks else 'a'} mask head, so it is not a {name} file")
    state = _reorder(state, weights_order(class_names, int(state[key].shape[0]) - 1, classes_file))
    model = LTDetector(body="resnet50_fpn", num_classes=len(class_names), masks=masks, frozen_bn=True,
                       anchor_sizes=TORCHVISION_ANCHORS, representation=1024, rois_per_image=512)
    extra = load_into(model, {_ours(k): v for k, v in state.items()}, weights)
    if extra:
        raise ModelError(f"{weights}: {extra} tensors {spec} does not have; is it this architecture's file?")
    return model.eval()


def import_model(cfg: Stage1Config) -> int:
    """Write a stage-1 checkpoint holding the trained torchvision detector in `cfg.weights`."""
    from training.detection.train import LVISDataset, _describe, det_preprocess, evaluate_detector, val_split

    source = resolve_det_source(cfg.data, cfg.train_ann, cfg.val_ann, cfg.images)
    pre = det_preprocess(cfg)
    train = LVISDataset(source, "train", pre)
    model = imported_detector(cfg.backbone, cfg.weights, train.class_names, cfg.classes)
    prov = provenance(cfg, "import", model=cfg.backbone, weights=weights_record(cfg.weights),
                      dataset_files=source.to_dict())
    desc = _describe(train, {"method": "none"}, prov, model.arch["masks"], pre)
    print(f"import: {cfg.backbone} from {cfg.weights}, {len(train.class_names)} categories, short side "
          f"{pre.resize_short} / long side <= {pre.max_size}")
    history = {"imported": weights_record(cfg.weights),
               "val": evaluate_detector(model, desc, val_split(cfg, source, pre), name="imported")}
    sha = save_checkpoint(cfg.out, model, desc, {"stage1": history, "args": as_record(cfg)})
    print(f"wrote {cfg.out} (sha256 {sha[:12]})")
    return 0
