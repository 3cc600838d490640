"""What every task's evaluation report shares: the name a model goes by."""
from __future__ import annotations

import os


def model_name(path: str) -> str:
    """File name without folder and suffix, for tables and plot names."""
    return os.path.splitext(os.path.basename(path))[0]
