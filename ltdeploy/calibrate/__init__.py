"""`ltdeploy calibrate`: long-tail calibration of a classifier or segmenter that exists only as ONNX, without torch.

The pure arithmetic every calibration shares lives here once, torch-free, and training/core imports it:
`grw` (generalized re-weighting weights), `auto` (--method auto's candidates, scoring and record), `algebra`
(the folded forms' rows). The command's own pieces: `head` (finding the classifier in a graph), `cache`
(features and logits through ONNX Runtime), `fit` (the numpy fits), `fold` (the calibration written into the
graph), `graph_io`, `preprocessing`, `data`, `tasks` (classifier or segmenter), `pipeline` (the steps in order),
`command` (the command line alone, light enough to load with every `ltdeploy` command).
"""
