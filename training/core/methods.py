"""Stage-2 calibration methods on a frozen stage-1 model: name → (calibrator builder, trainer).

Every method produces a calibrator with `forward(feat, z)` and `fold(head, mode)`; new methods register
in METHODS. Sampling and losses follow docs/method.md §3-4: DisAlign and the G-RW classifier use instance
sampling with the G-RW loss; cRT and LWS use class-balanced sampling with plain cross-entropy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import torch
from torch import nn

from ltdeploy.calibrate.auto import classification_candidates as auto_candidates
from training.config import TrainConfig
from training.core.baselines import LWS, NCM, LogitAdjust, RetrainedClassifier, TauNorm
from training.core.calibration import DisAlign, PixelDisAlign
from training.core.grw import GRWLoss
from training.core.loops import fit_on_features

TAU_GRID = [round(0.1 * i, 1) for i in range(21)]  # tau-norm search range, 0 .. 2


@dataclass(frozen=True)
class Stage2Method:
    """A calibration method: how to build its module, how to fit it, and what it is."""

    build: Callable[[int, int], nn.Module]  # (feature dim d, classes K) → calibrator(feat, z) → logits
    fit: Callable[[nn.Module, nn.Module, object, TrainConfig], dict]  # (calibrator, model, data, cfg)
    summary: str


def _sgd_fit(calibrator: nn.Module, model: nn.Module, data, cfg: TrainConfig, loss: nn.Module,
             balanced: bool) -> dict:
    def forward(feat: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            z = model.head(feat)
        return calibrator(feat, z)

    params = [p for p in calibrator.parameters() if p.requires_grad]
    log = fit_on_features(forward, params, loss, lambda: data.batches(balanced), data.steps_per_epoch, cfg)
    return {"sampling": "class-balanced" if balanced else "instance", **log}


def _fit_grw(calibrator: nn.Module, model: nn.Module, data, cfg: TrainConfig) -> dict:
    loss = GRWLoss(data.counts, cfg.rho)
    info = _sgd_fit(calibrator, model, data, cfg, loss, balanced=False)
    return {"rho": cfg.rho, "grw_weights": [round(float(w), 6) for w in loss.weight], **info}


def _fit_balanced_ce(calibrator: nn.Module, model: nn.Module, data, cfg: TrainConfig) -> dict:
    return _sgd_fit(calibrator, model, data, cfg, nn.CrossEntropyLoss(), balanced=True)


def _retrained(fit: Callable) -> Callable:
    """A re-trained classifier's fit: it takes the stage-1 head's kind first."""
    def run(calibrator: RetrainedClassifier, model: nn.Module, data, cfg: TrainConfig) -> dict:
        calibrator.match_head(model.head)
        return {"head": "cosine" if bool(calibrator.cosine) else "linear", **fit(calibrator, model, data, cfg)}
    return run


def _fit_tau_norm(calibrator: TauNorm, model: nn.Module, data, cfg: TrainConfig) -> dict:
    """Pick tau by balanced top-1 on the validation split (never test)."""
    feats, labels = data.val_features()
    scores = {}
    for tau in TAU_GRID:
        calibrator.set_tau(model.head, tau)
        with torch.no_grad():
            pred = calibrator(feats, None).argmax(1)
        per_class = [float((pred[labels == c] == c).float().mean()) for c in labels.unique()]
        scores[tau] = float(np.mean(per_class))
    best = max(TAU_GRID, key=lambda t: (scores[t], -t))
    calibrator.set_tau(model.head, best)
    return {"tau": best, "val_top1_by_tau": scores}


def _fit_ncm(calibrator: NCM, model: nn.Module, data, cfg: TrainConfig) -> dict:
    feats, labels = data.features()
    calibrator.set_means(feats, labels, len(data.counts))
    return {"classes_with_means": int((calibrator.means.abs().sum(1) > 0).sum())}


def _fit_logit_adjust(calibrator: LogitAdjust, model: nn.Module, data, cfg: TrainConfig) -> dict:
    calibrator.set_prior(data.counts, cfg.tau)
    return {"tau": cfg.tau}


def _disalign(learn_alpha: bool, learn_beta: bool, cls: type = DisAlign) -> Callable[[int, int], nn.Module]:
    def build(d: int, k: int) -> nn.Module:
        cal = cls(d, k)
        cal.alpha.requires_grad_(learn_alpha)
        cal.beta.requires_grad_(learn_beta)
        return cal
    return build


METHODS: dict[str, Stage2Method] = {
    "disalign": Stage2Method(_disalign(True, True), _fit_grw, "DisAlign: alpha, beta, sigma(x), G-RW"),
    "disalign-magnitude": Stage2Method(_disalign(True, False), _fit_grw, "DisAlign, beta fixed at 0 (G-RW)"),
    "disalign-margin": Stage2Method(_disalign(False, True), _fit_grw, "DisAlign, alpha fixed at 1 (G-RW)"),
    "grw-classifier": Stage2Method(RetrainedClassifier, _retrained(_fit_grw),
                                   "classifier re-trained with G-RW, no calibration"),
    "crt": Stage2Method(RetrainedClassifier, _retrained(_fit_balanced_ce),
                        "cRT: classifier re-trained, class-balanced"),
    "lws": Stage2Method(LWS, _fit_balanced_ce, "LWS: per-class logit scale, class-balanced"),
    "tau-norm": Stage2Method(TauNorm, _fit_tau_norm, "tau-normalised weights, tau chosen on val"),
    "ncm": Stage2Method(NCM, _fit_ncm, "nearest class mean on centred, normalised features"),
    "logit-adjust": Stage2Method(LogitAdjust, _fit_logit_adjust, "post-hoc logit adjustment z - tau log prior"),
}
CLASSIFICATION_BUILDERS: dict[str, Callable[[int, int], nn.Module]] = {k: m.build for k, m in METHODS.items()}
TRAINED = {"disalign", "disalign-magnitude", "disalign-margin", "grw-classifier", "crt", "lws"}

def classification_candidates(cfg: TrainConfig) -> list[tuple[str, dict]]:
    """--method auto's classification candidates (ltdeploy.calibrate.auto: the ones `ltdeploy calibrate` tries)."""
    return auto_candidates()


def rho_candidates(grid: tuple[float, ...], settings: tuple[dict, ...] = ({},)
                   ) -> Callable[[TrainConfig], list[tuple[str, dict]]]:
    """DisAlign at each rho of `grid` (segmentation, detection), under each of `settings` (other stage-2
    settings to try as well; {} is the run's own, and a setting the run already has is not tried twice)."""
    def candidates(cfg: TrainConfig) -> list[tuple[str, dict]]:
        kept = [s for s in settings if not s or any(getattr(cfg, k) != v for k, v in s.items())]
        return [("disalign", {"rho": r, **s}) for s in kept for r in grid]
    return candidates


# Segmentation calibrates every pixel (PixelDisAlign); seg_engine.py fits them with pixel-count G-RW.
SEG_METHODS: dict[str, Callable[[int, int], nn.Module]] = {
    "disalign": _disalign(True, True, PixelDisAlign),
    "disalign-magnitude": _disalign(True, False, PixelDisAlign),
    "disalign-margin": _disalign(False, True, PixelDisAlign),
}

# Detection calibrates the K foreground logits of every RoI (the background logit is left alone).
DET_METHODS: dict[str, Callable[[int, int], nn.Module]] = {"disalign": _disalign(True, True, DisAlign)}


def build_calibrator(name: str, in_features: int, num_classes: int,
                     table: Mapping[str, Callable[[int, int], nn.Module]] | None = None) -> nn.Module:
    """A fresh calibration module of a registered method (of `table`, default classification's), tagged with
    its name."""
    table = CLASSIFICATION_BUILDERS if table is None else table
    if name not in table:
        raise ValueError(f"unknown stage-2 method {name!r}; choose from {', '.join(table)}")
    module = table[name](in_features, num_classes)
    module.method_name = name
    return module
