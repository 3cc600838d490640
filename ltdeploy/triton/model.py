"""The Triton Python-backend model: encoded images in (IMAGE, bytes), ltdeploy's JSON results out (RESULT).

Decoding, preprocessing and post-processing are ltdeploy's own (the same `Predictor` as the CLI), so a
Triton client gets exactly what `ltdeploy predict --json` prints per image. The engine runs either as its
own Triton model (onnxruntime_onnx / tensorrt_plan, reached through BLS, batched by Triton), or inside
this model through ltdeploy's backends (for Triton builds with only the Python backend).
"""
from __future__ import annotations

import json
import os

import numpy as np

from ltdeploy.backends import Backend, load_backend
from ltdeploy.errors import EngineError, ImageError, LtDeployError
from ltdeploy.image_io import decode_image
from ltdeploy.metadata import ModelDescription
from ltdeploy.predictor import Predictor

INPUT, OUTPUT = "IMAGE", "RESULT"
DESCRIPTION_FILE = "description.json"


class BlsBackend(Backend):
    """Runs the engine as another model of the same Triton server (business-logic scripting)."""

    def __init__(self, model_name: str, description: ModelDescription) -> None:
        self.path = f"triton:{model_name}"
        self.model_name, self.description = model_name, description
        self.input_names, self.output_names = [description.input_name], list(description.output_names)

    @property
    def provider(self) -> str:
        """The Triton model that executes the graph."""
        return self.path

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One synchronous BLS request with all outputs."""
        import triton_python_backend_utils as pb_utils

        request = pb_utils.InferenceRequest(model_name=self.model_name, requested_output_names=self.output_names,
                                            inputs=[pb_utils.Tensor(n, np.ascontiguousarray(a))
                                                    for n, a in inputs.items()])
        response = request.exec()
        if response.has_error():
            raise EngineError(f"{self.model_name}: {response.error().message()}")
        return {n: pb_utils.get_output_tensor_by_name(response, n).as_numpy() for n in self.output_names}


def model_parameters(config: dict) -> dict[str, str]:
    """The string parameters of a Triton model config (as the Python backend receives it, JSON)."""
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


def results_for(predictor: Predictor, batches: list[np.ndarray], topk: int) -> list[list[dict]]:
    """Per request, per image: ltdeploy's result dict, or {"error": ...} for an image that did not decode."""
    names, images, slots, out = [], [], [], []
    for i, items in enumerate(batches):
        out.append([])
        for j, data in enumerate(items.reshape(-1)):
            name = f"request{i}_image{j}"
            try:
                images.append(decode_image(bytes(data), name))
            except ImageError as exc:
                out[i].append({"path": name, "error": str(exc)})
                continue
            names.append(name)
            slots.append((i, len(out[i])))
            out[i].append({})
    for (i, j), res in zip(slots, predictor.predict_arrays(names, images, topk) if images else []):
        out[i][j] = res.to_dict()
    return out


class TritonPythonModel:
    """Triton's entry point (see the Python backend's model.py contract)."""

    def initialize(self, args: dict) -> None:
        """Load the description and the engine (own file, or the engine model through BLS)."""
        config = json.loads(args["model_config"])
        params = model_parameters(config)
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(version_dir, DESCRIPTION_FILE)) as f:
            description = ModelDescription.from_json(f.read(), source=version_dir)
        if params.get("engine_model"):
            backend: Backend = BlsBackend(params["engine_model"], description)
        else:
            backend = load_backend(os.path.join(version_dir, params["engine_file"]),
                                   device=params.get("device", "auto"), threads=int(params.get("threads", "0")))
        self.predictor = Predictor(backend,
                                   score_threshold=float(params.get("score_threshold", "0.25")),
                                   max_detections=int(params.get("max_detections", "100")))
        self.topk = int(params.get("topk", "5"))

    def execute(self, requests: list) -> list:
        """All requests of a dynamic batch in one engine call (detection: one image at a time)."""
        import triton_python_backend_utils as pb_utils

        try:
            batches = [pb_utils.get_input_tensor_by_name(r, INPUT).as_numpy() for r in requests]
            results = results_for(self.predictor, batches, self.topk)
        except LtDeployError as exc:
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))) for _ in requests]
        responses = []
        for items, batch in zip(results, batches):
            text = np.array([json.dumps(r).encode() for r in items], dtype=np.object_).reshape(batch.shape)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(OUTPUT, text)]))
        return responses
