"""INT8 compression (`ltdeploy quantize`): the calibration set, ONNX Runtime's static QDQ quantization of the
feature extractor, and the record the INT8 model carries. Needs the `quantize` extra (onnx), never torch."""

METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}  # ours → ONNX Runtime's name
SCOPES = ("features", "all")
SAMPLINGS = ("balanced", "instance")
# Where the INT8 graph runs: ONNX Runtime's CPU kernels fuse uint8 activations with an asymmetric zero point
# (signed, symmetric ones fall back to float around depthwise convolutions and clipped activations);
# TensorRT takes only signed, symmetric int8 (zero point 0).
TARGETS = ("cpu", "tensorrt")
