"""`train.py import` for segmenters: torchvision FCN / DeepLabV3 / LR-ASPP weights trained elsewhere become
stage 1; the final 1x1 convolution (LR-ASPP: its two summed ones) is the stage-1 classifier."""
from __future__ import annotations

import torch

from ltdeploy.class_order import weights_order
from ltdeploy.datasets.seg_folders import pixel_counts, read_seg_split
from ltdeploy.errors import ModelError
from ltdeploy.metadata import ModelDescription, share_thresholds
from training.config import Stage1Config
from training.core.provenance import provenance
from training.core.stage1 import finish_stage1
from training.core.weights import load_into, read_state_dict, weights_record
from training.segmentation.bodies import TORCHVISION_SEGMENTERS, body_of, classifier_of, torchvision_segmenter
from training.segmentation.model import LTSegmenter

# the classifier tensors of each kind of torchvision segmenter (their rows are the classes)
CLASSIFIER_KEYS = {"lraspp": ("classifier.low_classifier", "classifier.high_classifier"),
                   "other": ("classifier.4",), "aux": ("aux_classifier.4",)}


def imported_segmenter(spec: str, weights: str, class_names: list[str], classes_file: str | None) -> LTSegmenter:
    """The stage-1 segmenter holding a torchvision segmenter's weights, its classes in the dataset's order."""
    name = spec[len("tv:"):] if spec.startswith("tv:") else ""
    if name not in TORCHVISION_SEGMENTERS:
        raise ModelError(f"--arch {spec!r}: segmentation imports tv:NAME, NAME one of {', '.join(TORCHVISION_SEGMENTERS)}")
    state = read_state_dict(weights)
    aux = any(k.startswith("aux_classifier.") for k in state)
    heads = [*CLASSIFIER_KEYS["lraspp" if name.startswith("lraspp") else "other"], *(CLASSIFIER_KEYS["aux"] if aux else ())]
    if f"{heads[0]}.weight" not in state:
        raise ModelError(f"{weights}: no {heads[0]}.weight (the classifier of {spec}); is it this architecture's file?")
    order = torch.as_tensor(weights_order(class_names, int(state[f"{heads[0]}.weight"].shape[0]), classes_file))
    state = dict(state)
    for key in (f"{h}.{t}" for h in heads for t in ("weight", "bias")):
        if key in state:
            state[key] = state[key][order]
    net = torchvision_segmenter(name, len(class_names), aux_loss=aux)
    extra = load_into(net, state, weights)
    if extra:
        unknown = sorted(set(state) - set(net.state_dict()))
        raise ModelError(f"{weights}: {extra} tensors {spec} does not have, e.g. {', '.join(unknown[:3])}")
    model = LTSegmenter(spec, len(class_names))
    model.body.load_state_dict(body_of(name, net).state_dict(), strict=True)
    weight, bias = classifier_of(name, net)
    with torch.no_grad():
        model.head.weight.copy_(weight.view_as(model.head.weight))
        model.head.bias.copy_(bias)
    return model.eval()


def import_model(cfg: Stage1Config) -> int:
    """Write a stage-1 checkpoint holding the trained torchvision segmenter in `cfg.weights`."""
    from training.segmentation.train import seg_preprocess_for, validate

    train = read_seg_split(cfg.data, "train")
    counts = pixel_counts(train)
    model = imported_segmenter(cfg.backbone, cfg.weights, train.class_names, cfg.classes)
    pre = seg_preprocess_for(cfg)
    print(f"import: {cfg.backbone} from {cfg.weights}, {len(counts)} classes, input {pre.input_size}")
    desc = ModelDescription(task="segmentation", class_names=train.class_names, class_counts=counts,
                            class_ids=train.class_ids, group_thresholds=share_thresholds(counts), preprocess=pre,
                            input_name="images", output_names=["logits"], calibration={"method": "none"},
                            provenance=provenance(cfg, "import", model=cfg.backbone,
                                                  weights=weights_record(cfg.weights)))
    finish_stage1(cfg, model, desc, {"imported": weights_record(cfg.weights)},
                  lambda m, d, name: validate(m, cfg.data, d, name))
    return 0
