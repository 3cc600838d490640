"""Semantic segmentation (ADE20K, seg-lt): data, segmenters, per-pixel stage 2, mIoU by head / body / tail."""
