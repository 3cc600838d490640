"""What every task's evaluation report shares: the name a model goes by, the line naming an auto choice."""
from __future__ import annotations

import os


def model_name(path: str) -> str:
    """File name without folder and suffix, for tables and plot names."""
    return os.path.splitext(os.path.basename(path))[0]


def print_auto_choice(calibration: dict) -> None:
    """Name the calibration `--method auto` chose, and by how much, when it did."""
    if "auto" in calibration:
        from ltdeploy.description_text import auto_choice_text

        print(f"calibration chosen by --method auto: {auto_choice_text(calibration)}")
