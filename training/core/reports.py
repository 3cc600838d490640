"""What every task's evaluation report shares: the name a model goes by and the atomic JSON write."""
from __future__ import annotations

import json
import os

from ltdeploy.files import atomic_path


def model_name(path: str) -> str:
    """File name without folder and suffix, for tables and plot names."""
    return os.path.splitext(os.path.basename(path))[0]


def write_json(path: str, result: dict) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(result, f, indent=1)
