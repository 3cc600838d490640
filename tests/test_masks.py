"""The runtime's mask paste is torchvision's, pixel for pixel, without torch and without image-sized arrays."""
import numpy as np
import torch
from helpers import mask_to_rle
from torchvision.models.detection.roi_heads import paste_masks_in_image

from ltdeploy.masks import MaskPatch, paste_masks


def test_paste_matches_torchvision_pixel_for_pixel():
    rng = np.random.default_rng(0)
    probs = rng.random((200, 1, 28, 28)).astype(np.float32)
    corner = rng.uniform(0, 120, (200, 2))
    boxes = np.clip(np.concatenate([corner, corner + rng.uniform(0.2, 90, (200, 2))], 1), 0, [131, 97, 131, 97])
    boxes = boxes.astype(np.float32)
    ref = paste_masks_in_image(torch.from_numpy(probs), torch.from_numpy(boxes), (97, 131))[:, 0].numpy() >= 0.5
    got = paste_masks(probs, boxes, (97, 131))
    assert len(got) == 200 and sum(p.area for p in got) == int(ref.sum()) > 0
    for r, p in zip(ref, got):
        assert np.array_equal(p.full(), r)
        assert p.rle() == mask_to_rle(r)  # the RLE straight from the patch is the whole image's
        assert p.bits.shape[0] <= 97 and p.bits.shape[1] <= 131  # a patch, never the whole image


def test_rle_of_patches_at_the_image_edges():
    bits = np.array([[1, 0], [1, 1]], bool)
    for top, left in ((0, 0), (3, 4), (0, 4), (3, 0)):  # corners: runs that start or end the image
        patch = MaskPatch(bits, top, left, (5, 6))
        assert patch.rle() == mask_to_rle(patch.full()), (top, left)
    empty = MaskPatch(np.zeros((0, 0), bool), 0, 0, (5, 6))
    assert empty.rle() == mask_to_rle(empty.full()) == {"size": [5, 6], "counts": [30]}


def test_no_detections_and_mismatched_inputs():
    assert paste_masks(np.zeros((0, 1, 28, 28)), np.zeros((0, 4)), (10, 10)) == []
    try:
        paste_masks(np.zeros((2, 1, 28, 28)), np.zeros((1, 4)), (10, 10))
    except ValueError as exc:
        assert "2 masks for 1 boxes" in str(exc)
    else:
        raise AssertionError("mismatched masks and boxes were accepted")
