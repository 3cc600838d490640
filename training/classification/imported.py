"""`train.py import` for classifiers: a timm or torchvision model trained elsewhere becomes stage 1. Its own
classifier is the stage-1 head and its pre-logits the features, so every stage-2 method calibrates it as it is."""
from __future__ import annotations

import torch

from ltdeploy.class_order import weights_order
from ltdeploy.datasets.classification_sets import read_split
from ltdeploy.errors import ModelError
from ltdeploy.metadata import ModelDescription, default_group_thresholds
from training.classification.backbones import classifier_of, full_classifier, headless, is_library_spec
from training.classification.model import LTClassifier
from training.config import Stage1Config
from training.core.provenance import provenance
from training.core.stage1 import finish_stage1
from training.core.weights import load_into, read_state_dict, weights_record


def _param_name(net: torch.nn.Module, param: torch.Tensor) -> str:
    return next(n for n, p in net.named_parameters() if p is param)


def imported_classifier(spec: str, weights: str, class_names: list[str], classes_file: str | None) -> LTClassifier:
    """The stage-1 model holding `weights` (a whole timm / torchvision classifier), its outputs in the dataset's
    class order."""
    if not is_library_spec(spec):
        raise ModelError(f"--arch {spec!r}: import takes a library model, timm:NAME or tv:NAME")
    state = read_state_dict(weights)
    probe = full_classifier(spec, 1)
    linear = classifier_of(spec, probe)
    w_key = _param_name(probe, linear.weight)
    b_key = w_key[:-len("weight")] + "bias"
    if w_key not in state:
        raise ModelError(f"{weights}: no {w_key} (the classifier of {spec}); is it this architecture's file?")
    order = torch.as_tensor(weights_order(class_names, int(state[w_key].shape[0]), classes_file))
    state = dict(state, **{w_key: state[w_key][order]})
    if b_key in state:
        state[b_key] = state[b_key][order]
    net = full_classifier(spec, len(class_names))
    extra = load_into(net, state, weights)
    if extra:
        unknown = sorted(set(state) - set(net.state_dict()))
        raise ModelError(f"{weights}: {extra} tensors {spec} does not have, e.g. {', '.join(unknown[:3])}; is it "
                         "this architecture's file?")
    net.eval()
    linear = classifier_of(spec, net)
    model = LTClassifier(spec, "linear", len(class_names))
    body, dim = headless(spec, net)
    model.backbone.load_state_dict(body.state_dict(), strict=True)
    with torch.no_grad():
        model.head.weight.copy_(linear.weight)
        model.head.bias.copy_(linear.bias if linear.bias is not None else torch.zeros(len(class_names)))
    return model.eval()


def import_model(cfg: Stage1Config) -> int:
    """Write a stage-1 checkpoint holding the trained classifier in `cfg.weights`."""
    from training.classification.train import preprocess_for, validate

    train = read_split(cfg.data, "train")
    counts = train.class_counts()
    model = imported_classifier(cfg.backbone, cfg.weights, train.class_names, cfg.classes)
    pre = preprocess_for(cfg)
    thresholds = (cfg.many, cfg.few) if cfg.many is not None else default_group_thresholds(counts)
    print(f"import: {cfg.backbone} from {cfg.weights}, {train.num_classes} classes, features {model.feat_dim}, "
          f"input {pre.input_size}")
    desc = ModelDescription(task="classification", class_names=train.class_names, class_counts=counts,
                            group_thresholds=thresholds, preprocess=pre, input_name="images",
                            output_names=["logits"], calibration={"method": "none"},
                            provenance=provenance(cfg, "import", backbone=cfg.backbone, head="linear",
                                                  weights=weights_record(cfg.weights)))
    finish_stage1(cfg, model, desc, {"imported": weights_record(cfg.weights)},
                  lambda m, d, name: validate(m, cfg.data, d, name))
    return 0
