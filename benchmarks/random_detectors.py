"""Random-weight detectors shaped like trained ones, and photo-sized scenes, for the scale benchmarks
(lvis_scale.py, nms_cap.py): what they measure is size, time and memory, never accuracy."""
from __future__ import annotations

import os
from unittest import mock

import cv2
import numpy as np

SHAPES = ((480, 640), (640, 480))  # (height, width) of the photo-sized scenes


def scenes(folder: str) -> list[str]:
    """Photo-sized det-lt-style scenes (landscape and portrait), written as JPEG."""
    from training.detection.synthetic import render_scene
    from training.segmentation.synthetic import latin_objects

    rng = np.random.default_rng(0)
    names = latin_objects(8)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, shape in enumerate(SHAPES):
        img, _ = render_scene(shape, list(range(8)), names, rng, 60, 160)
        paths.append(os.path.join(folder, f"scene_{shape[1]}x{shape[0]}.jpg"))
        cv2.imwrite(paths[-1], img[:, :, ::-1])
    return paths


def build(body: str, classes: int, masks: bool = True):
    """A random-weight Mask R-CNN (Faster R-CNN without `masks`) and its description (LVIS-like power-law
    image counts)."""
    import torch

    from ltdeploy.metadata import ModelDescription
    from ltdeploy.preprocess import PreprocessConfig
    from training.detection.model import DET_SIZES, LTDetector

    torch.manual_seed(0)
    model = LTDetector(body=body, num_classes=classes, masks=masks).eval()
    counts = np.maximum(1, np.round(1000 * 1000.0 ** (-np.arange(classes) / max(1, classes - 1)))).astype(int)
    desc = ModelDescription(task="detection", class_names=[f"class_{i}" for i in range(classes)],
                            class_counts=counts.tolist(), group_thresholds=(100, 11),
                            preprocess=PreprocessConfig.fit(*DET_SIZES[body]), input_name="images",
                            output_names=["boxes", "labels", "scores"] + (["masks"] if masks else []),
                            calibration={"method": "none", "folded": "plain"},
                            provenance={"weights": "random (scale benchmark)", "model": body})
    return model, desc


def calibrate_batchnorm(model, images: list[np.ndarray]) -> None:
    """Set every BatchNorm's running statistics to those of the photos (cumulative average), then eval mode."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.net.backbone.train()
    with torch.no_grad():
        for x in images:
            model.net.backbone(model.net.transform([torch.from_numpy(x)])[0].tensors)
    model.eval()


def trained_like(model, images: list[np.ndarray], fraction: float) -> float:
    """Widen the classifier weights and set the background bias so that `fraction` of the (proposal, class)
    scores on `images` clear the score threshold (bisection on the captured RoI logits); returns the bias."""
    import torch

    from training.detection.model import SCORE_THRESHOLD

    heads, predictor = model.net.roi_heads, model.branch.predictor
    captured: list[torch.Tensor] = []
    real = heads.postprocess_detections

    def capture(class_logits, *rest):
        captured.append(class_logits)
        return real(class_logits, *rest)
    with torch.no_grad():
        predictor.cls_score.weight.normal_(0, 0.3)
        with mock.patch.object(heads, "postprocess_detections", capture), torch.inference_mode():
            for x in images:
                model.net([torch.from_numpy(x)])
    logits = torch.cat(captured)
    lo, hi = -60.0, 60.0
    for _ in range(60):
        bias = (lo + hi) / 2
        shifted = logits.clone()
        shifted[:, 0] += bias
        share = float((shifted.softmax(1)[:, 1:] > SCORE_THRESHOLD).float().mean())
        lo, hi = (bias, hi) if share > fraction else (lo, bias)
    with torch.no_grad():
        predictor.cls_score.bias[0] += bias
    return bias
