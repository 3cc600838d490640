"""The GPU deployment side: TensorRT plans (`builder`, `plan`, `trt_common`), the fp16 ONNX (`fp16`), and
the little of CUDA they need (`cuda`). Nothing on the CPU data path imports it; the TensorRT backend
(`ltdeploy/backends/tensorrt.py`) and `ltdeploy build` import it lazily."""
