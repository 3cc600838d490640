"""The backend contract: numpy in, numpy out, tensors by name."""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ltdeploy.metadata import ModelDescription


class Backend(ABC):
    """A loaded engine. `run` maps {input name: array} to {output name: array}."""

    path: str
    description: ModelDescription
    input_names: list[str]
    output_names: list[str]

    @property
    @abstractmethod
    def provider(self) -> str:
        """What actually executes the graph (e.g. 'CPUExecutionProvider', 'TensorRT 10.13 on sm_89')."""

    @abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Execute one batch; arrays are float32, batch first."""
