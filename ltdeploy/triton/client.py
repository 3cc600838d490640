"""Calling a model written by `ltdeploy export-triton`: encoded images in, ltdeploy's result dicts out."""
from __future__ import annotations

import json

import numpy as np

from ltdeploy.errors import EngineError
from ltdeploy.triton.model import INPUT, OUTPUT


def _http():
    try:
        import tritonclient.http as http
    except ImportError:
        raise EngineError("Triton clients need tritonclient: pip install 'ltdeploy[triton]'") from None
    return http


def connect(url: str, timeout: float = 60.0):
    """A tritonclient HTTP client for host:port."""
    return _http().InferenceServerClient(url, connection_timeout=timeout, network_timeout=timeout)


def infer_images(client, model: str, images: list[bytes]) -> list[dict]:
    """Send encoded images as one request; one result dict (or {"error": ...}) per image, in order."""
    http = _http()
    data = np.array([[b] for b in images], dtype=np.object_)
    tensor = http.InferInput(INPUT, list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data)
    response = client.infer(model, [tensor], outputs=[http.InferRequestedOutput(OUTPUT)])
    return [json.loads(row[0]) for row in response.as_numpy(OUTPUT)]
