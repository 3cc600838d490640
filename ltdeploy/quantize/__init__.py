"""INT8 compression (`ltdeploy quantize`): the calibration set, ONNX Runtime's static QDQ quantization of the
feature extractor, and the record the INT8 model carries. Needs the `quantize` extra (onnx), never torch."""

METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}  # ours → ONNX Runtime's name
SCOPES = ("features", "all")
SAMPLINGS = ("balanced", "instance")
