"""Prove an exported ONNX file computes what the PyTorch model computes, on real images."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ltdeploy.backends.onnxruntime import OnnxRuntimeBackend


@dataclass
class ParityReport:
    """Max abs logit difference and argmax agreement (per image, or per pixel for segmentation)."""

    max_abs_diff: float | None  # None when the graph outputs labels only
    agreement: float
    images: int
    batch_sizes: list[int]
    min_agreement: float = 1.0
    max_abs_logit: float = 0.0  # the largest |logit| PyTorch gave

    def allowed(self, tol: float) -> float:
        """The largest difference allowed: `tol`, relative to the largest logit where that is above 1 (float32
        rounding grows with the values a deeper network computes)."""
        return tol * max(1.0, self.max_abs_logit)

    def ok(self, tol: float) -> bool:
        """Logits within tolerance, and the argmax identical on at least `min_agreement` of the outputs."""
        return (self.max_abs_diff is None or self.max_abs_diff <= self.allowed(tol)) and \
            self.agreement >= self.min_agreement


@torch.no_grad()
def check_parity(onnx_path: str, reference: nn.Module, batch: np.ndarray, min_agreement: float = 1.0,
                 chunk: int = 256) -> ParityReport:
    """Run `batch` (N, 3, H, W float32) through ONNX Runtime in chunks of `chunk` images and one by one
    (the first chunk), and through torch. A graph whose output is `labels` is compared with the torch argmax."""
    backend = OnnxRuntimeBackend(onnx_path)
    name, out = backend.description.input_name, backend.description.output_names[0]
    labels_only = out == "labels"
    reference.eval()
    diff, same, total, scale = 0.0, 0, 0, 0.0
    for start in range(0, len(batch), chunk):
        x = batch[start:start + chunk]
        ref = reference(torch.from_numpy(x)).numpy()
        scale = max(scale, float(np.abs(ref).max())) if ref.size else scale
        runs = [backend.run({name: x})[out]]
        if start == 0:
            runs.append(np.concatenate([backend.run({name: x[i:i + 1]})[out] for i in range(min(len(x), 8))]))
        for got in runs:
            want = ref[:len(got)]
            if labels_only:
                same += int((got == want.argmax(1)).sum())
                total += got.size
            else:
                diff = max(diff, float(np.abs(got - want).max()))
                same += int((got.argmax(1) == want.argmax(1)).sum())
                total += got.argmax(1).size
    return ParityReport(None if labels_only else diff, same / max(total, 1), len(batch),
                        [1, min(chunk, len(batch))], min_agreement, scale)
