"""ltdeploy: run long-tail-calibrated vision models exported by ltdeploy's training and export tools.

The runtime depends on numpy, OpenCV, ONNX Runtime and click only; it never imports torch.
"""
from ltdeploy.errors import LtDeployError

__version__ = "0.1.0"

__all__ = ["LtDeployError", "__version__"]
