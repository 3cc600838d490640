import numpy as np
import pytest

from ltdeploy.evaluation.seg_scores import ConfusionAccumulator, segmentation_scores, share_groups


def test_iou_and_accuracy_by_hand():
    label = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 1]])
    acc = ConfusionAccumulator(3)
    acc.update(pred, label)
    assert acc.matrix.sum() == 6  # ignore pixels skipped
    s = segmentation_scores(acc.matrix, ["head", "body", "tail"])
    # class 0: tp 1, truth 2, pred 2 → IoU 1/3; class 1: tp 2, truth 2, pred 3 → 2/3; class 2: tp 1, truth 2, pred 1 → 1/2
    assert s["per_class_iou"] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert s["mIoU"] == pytest.approx(np.mean([1 / 3, 2 / 3, 1 / 2]))
    assert s["mAcc"] == pytest.approx(np.mean([1 / 2, 1, 1 / 2]))
    assert s["tail_mIoU"] == pytest.approx(0.5) and s["head_classes"] == 1


def test_absent_classes_do_not_count_and_groups_follow_pixel_share():
    acc = ConfusionAccumulator(3)
    acc.update(np.array([0, 0, 1]), np.array([0, 0, 1]))
    s = segmentation_scores(acc.matrix, ["head", "body", "tail"])
    assert s["mIoU"] == 1.0 and s["tail_mIoU"] is None and s["per_class_iou"][2] is None
    assert share_groups([9000, 500, 50, 5]) == ["head", "head", "body", "tail"]
