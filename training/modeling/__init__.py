"""Model building blocks: backbones, classifier heads, calibration modules and their folded forms."""
