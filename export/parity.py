"""Prove an exported ONNX file computes what the PyTorch model computes, on real images."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ltdeploy.backends.onnxruntime import OnnxRuntimeBackend


@dataclass
class ParityReport:
    """Max abs logit difference and top-1 agreement over the images checked, per batch shape."""

    max_abs_diff: float
    top1_agreement: float
    images: int
    batch_sizes: list[int]

    def ok(self, tol: float) -> bool:
        """Within tolerance and identical top-1 everywhere."""
        return self.max_abs_diff <= tol and self.top1_agreement == 1.0


@torch.no_grad()
def check_parity(onnx_path: str, reference: nn.Module, batch: np.ndarray) -> ParityReport:
    """Run `batch` (N, 3, H, W float32) through ONNX Runtime at batch size 1 and N, and through torch."""
    backend = OnnxRuntimeBackend(onnx_path)
    name, out = backend.description.input_name, backend.description.output_names[0]
    reference.eval()
    ref = reference(torch.from_numpy(batch)).numpy()
    whole = backend.run({name: batch})[out]
    single = np.concatenate([backend.run({name: batch[i:i + 1]})[out] for i in range(min(len(batch), 8))])
    diff = max(float(np.abs(whole - ref).max()), float(np.abs(single - ref[:len(single)]).max()))
    agree = float((whole.argmax(1) == ref.argmax(1)).mean())
    return ParityReport(diff, agree, len(batch), [1, len(batch)])
