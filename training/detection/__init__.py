"""Detection and instance segmentation (LVIS, COCO, det-lt): data, Faster / Mask R-CNN with PCB, LVIS AP."""
