"""Export: checkpoints → self-describing ONNX with the calibration folded into the graph."""
