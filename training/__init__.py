"""ltdeploy training: two-stage long-tail models (stage 1 joint, stage 2 calibration)."""
from training.checkpoints import load_checkpoint, read_checkpoint

__all__ = ["load_checkpoint", "read_checkpoint"]
