"""PCB pieces (confusion EMA, soft targets, a_r, pass weights), the iterative box branch, and DisAlign on the
foreground logits of a detector."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from training.core.calibration import random_disalign
from training.core.methods import DET_METHODS, build_calibrator
from training.detection.heads import RoIBoxBranch, pass_weights
from training.detection.model import LTDetector
from training.detection.pcb import ConfusionEMA, pass_strength, pcb_pass_loss


def test_confusion_ema_first_update_sets_then_averages() -> None:
    ema = ConfusionEMA(3, gamma=0.9)
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])
    ema.update(logits[:2], torch.tensor([0, 0]))  # class 0 only
    p = logits[:2].softmax(1).mean(0)
    assert torch.allclose(ema.matrix[0], p / p.sum())
    assert ema.matrix[1:].abs().sum() == 0 and ema.seen.tolist() == [True, False, False]
    assert not ema.ready
    ema.update(logits[2:], torch.tensor([0]))
    expected = 0.9 * (p / p.sum()) + 0.1 * logits[2].softmax(0)
    assert torch.allclose(ema.matrix[0], expected / expected.sum())
    ema.update(logits[1:], torch.tensor([1, 2]))
    assert ema.ready
    assert torch.allclose(ema.matrix.sum(1), torch.ones(3))


def test_soft_targets_are_normalised_columns() -> None:
    ema = ConfusionEMA(3)
    ema.matrix.copy_(torch.tensor([[0.8, 0.2, 0.0], [0.1, 0.6, 0.3], [0.0, 0.5, 0.5]]))
    t = ema.soft_targets(torch.tensor([1, 2]))
    col1 = torch.tensor([0.2, 0.6, 0.5]) / 1.3
    assert torch.allclose(t[0], col1) and torch.allclose(t[1], torch.tensor([0.0, 0.3, 0.5]) / 0.8)
    assert torch.allclose(t.sum(1), torch.ones(2))


def test_pass_strength_and_weights() -> None:
    assert [pass_strength(0.4, r, 3) for r in range(3)] == [0.0, 0.2, 0.4]
    assert pass_strength(0.4, 0, 1) == 0.0
    assert pass_weights(3) == [0.2, 0.2, 0.6] and pass_weights(1) == [1.0]


def test_pcb_loss_mixes_only_positives() -> None:
    ema = ConfusionEMA(2)
    ema.matrix.copy_(torch.tensor([[0.7, 0.3], [0.4, 0.6]]))
    logits = torch.randn(4, 3)
    labels = torch.tensor([0, 1, 2, 0])  # background, class 1, class 2, background
    a = 0.4
    got = pcb_pass_loss(logits, labels, ema, a)
    ce = F.cross_entropy(logits, labels, reduction="none")
    logp = F.log_softmax(logits, 1)
    t1 = torch.tensor([0.7, 0.4]) / 1.1  # column of class 1 (index 0)
    t2 = torch.tensor([0.3, 0.6]) / 0.9
    soft = torch.stack([-(t1 * logp[1, 1:]).sum(), -(t2 * logp[2, 1:]).sum()])
    want = torch.stack([ce[0], (1 - a) * ce[1] + a * soft[0], (1 - a) * ce[2] + a * soft[1], ce[3]]).mean()
    assert torch.allclose(got, want)
    assert torch.allclose(pcb_pass_loss(logits, labels, ema, 0.0), ce.mean())


def test_iterative_branch_shapes_and_identity_start() -> None:
    torch.manual_seed(0)
    one, three = RoIBoxBranch(8, 7, 6, 32, passes=1), RoIBoxBranch(8, 7, 6, 32, passes=3)
    three.box_head.load_state_dict(one.box_head.state_dict())
    three.predictor.load_state_dict(one.predictor.state_dict())
    pooled = torch.randn(5, 8, 7, 7)
    three.train()
    z, d = three(pooled)
    assert z.shape == (5, 6) and d.shape == (5, 24) and len(three.pass_logits) == 3
    z1, _ = one(pooled)
    assert torch.allclose(z, z1, atol=1e-6)  # zero-initialised MLPs: the passes start identical
    with torch.no_grad():
        three.to_bias[-1].bias.fill_(0.5)
    assert not torch.allclose(three(pooled)[0], z1)
    three.eval()
    three(pooled)
    assert three.pass_logits == []


@pytest.fixture(scope="module")
def detector() -> LTDetector:
    torch.manual_seed(0)
    return LTDetector(body="mobilenet_v3_fpn", num_classes=5, passes=3, pcb=True).eval()


def test_disalign_leaves_background_and_earlier_passes_alone(detector: LTDetector) -> None:
    branch = detector.branch
    branch.eval()
    pooled = torch.randn(6, 256, 7, 7)
    with torch.no_grad():
        branch.to_bias[-1].weight.normal_(0, 0.05)
        z0, d0 = branch(pooled)
        detector.calibrator = random_disalign(build_calibrator("disalign", detector.feat_dim, 5, DET_METHODS))
        z1, d1 = branch(pooled)
    assert torch.equal(z1[:, 0], z0[:, 0])  # background logit untouched
    assert not torch.allclose(z1[:, 1:], z0[:, 1:])
    assert torch.equal(d1, d0)  # the passes before the last (and the boxes) are stage 1's
    with torch.no_grad():
        branch.fold("affine")
        z2, _ = branch(pooled)
    assert detector.calibrator is None
    assert torch.allclose(z2, z1, atol=1e-5)


def test_stage2_trains_only_the_calibrator(detector: LTDetector) -> None:
    model = LTDetector(**{k: v for k, v in detector.arch.items() if k != "task"})
    model.calibrator = build_calibrator("disalign", model.feat_dim, 5, DET_METHODS)
    model.freeze_stage1()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"net.roi_heads.box_predictor.calibrator.{n}"
                         for n in ("alpha", "beta", "confidence.weight", "confidence.bias")}
    model.train()
    assert not model.net.backbone.body["0"][1].training  # BatchNorm stays frozen
    assert model.net.roi_heads.training  # RoI sampling and losses still run


def test_a_detector_saved_before_the_shared_preprocessing_still_loads(tmp_path) -> None:
    """Its torchvision transform resized the long side to `image_size` inside the model: the 'fit' geometry."""
    from ltdeploy.metadata import ModelDescription
    from ltdeploy.preprocess import PreprocessConfig
    from training.checkpoints import read_checkpoint
    from training.core.checkpoint import FORMAT

    desc = ModelDescription("detection", [f"c{i}" for i in range(5)], [200, 50, 20, 5, 1], (100, 11),
                            PreprocessConfig((64, 64), 0, "bilinear", (0.0,) * 3, (1.0,) * 3), "images",
                            ["boxes", "labels", "scores"]).to_dict()
    desc["schema"] = "ltdeploy.model/1"
    del desc["class_ids"], desc["preprocess"]["resize"], desc["preprocess"]["max_size"]
    detector = LTDetector(body="mobilenet_v3_fpn", num_classes=5)
    arch = {**detector.arch, "image_size": 64, "calibrator": None}
    torch.save({"format": FORMAT, "arch": arch, "state_dict": detector.state_dict(), "description": desc,
                "history": {}}, tmp_path / "old.pt")
    ck = read_checkpoint(str(tmp_path / "old.pt"))
    assert ck.description.preprocess == PreprocessConfig.fit(64, 64) and ck.description.class_ids == [1, 2, 3, 4, 5]


def _head_inputs(heads, classes: int, proposals: int = 400):
    torch.manual_seed(0)
    corner = torch.rand(proposals, 2) * 100
    boxes = torch.cat([corner, corner + 4 + torch.rand(proposals, 2) * 40], 1)
    logits = torch.randn(proposals, classes + 1) * 3
    return logits, torch.randn(proposals, (classes + 1) * 4) * 0.1, [boxes], [(128, 160)]


def test_candidate_cap_off_is_torchvision_and_on_bounds_what_reaches_nms() -> None:
    """With both caps at 0 the post-processing is torchvision's own; with caps, per-class NMS sees at most
    `per_class` boxes of a class and `total` in all, the best-scoring ones."""
    from unittest import mock

    from torchvision.models.detection.roi_heads import RoIHeads

    from training.detection.candidate_cap import CandidateCap
    from training.detection.candidates import class_offset_nms

    model = LTDetector(body="lite0_fpn", num_classes=20).eval()
    heads = model.net.roi_heads
    args = _head_inputs(heads, 20)
    heads.candidate_cap = CandidateCap(0, 0)
    ours, ref = heads.postprocess_detections(*args), RoIHeads.postprocess_detections(heads, *args)
    for a, b in zip(ours, ref):
        assert torch.equal(a[0], b[0])
    seen, nms = [], class_offset_nms

    def spy(boxes, scores, idxs, iou):
        seen.append((scores.clone(), idxs.clone()))
        return nms(boxes, scores, idxs, iou)

    uncapped_scores = F.softmax(args[0], -1)[:, 1:]
    for cap in (CandidateCap(5, 0), CandidateCap(0, 60), CandidateCap(5, 60)):
        heads.candidate_cap, seen[:] = cap, []
        with mock.patch("training.detection.heads.class_offset_nms", spy):
            heads.postprocess_detections(*args)
        scores, labels = seen[0]
        if cap.per_class:
            assert torch.bincount(labels).max() <= cap.per_class
        if cap.total:
            assert len(scores) == cap.total
            kept = uncapped_scores.topk(cap.per_class, 0).values if cap.per_class else uncapped_scores
            assert torch.allclose(scores, kept.flatten().topk(cap.total).values)  # the best ones, in order


def test_masks_for_the_detected_class_only_equal_torchvisions() -> None:
    """Inference computes each detection's mask for its own class alone; torchvision's all-class mask head
    followed by its selection gives the same probabilities."""
    from torchvision.models.detection.roi_heads import maskrcnn_inference

    from training.detection.heads import label_mask_probs

    torch.manual_seed(0)
    model = LTDetector(body="lite0_fpn", num_classes=30, masks=True).eval()
    predictor = model.net.roi_heads.mask_predictor
    pooled, labels = torch.randn(17, 256, 14, 14), torch.randint(1, 31, (17,))
    with torch.no_grad():
        want = maskrcnn_inference(predictor(pooled), [labels])[0]
        got = label_mask_probs(predictor, pooled, labels)
    assert got.shape == want.shape == (17, 1, 28, 28)
    assert torch.allclose(got, want, atol=1e-6)
    with torch.no_grad():
        assert label_mask_probs(predictor, pooled[:0], labels[:0]).shape == (0, 1, 28, 28)


@pytest.mark.parametrize("body, strides", [("lite0_fpn", [8, 16, 32]), ("mobilenet_v3_fpn", [32, 32])])
def test_roi_poolers_use_the_true_strides_whatever_image_comes_first(body, strides) -> None:
    # torchvision infers the scales from the first batch and keeps them: a 40-px image would make the
    # stride-32 level 1/16 (2 ** round(log2(2 / 40)))
    model = LTDetector(body=body, num_classes=3, masks=True).eval()
    poolers = [model.net.roi_heads.box_roi_pool, model.net.roi_heads.mask_roi_pool]
    with torch.no_grad():
        model([torch.rand(3, 40, 40)])
    for pooler in poolers:
        assert pooler.scales == [1 / s for s in strides]
        assert pooler.map_levels.k_min == round(math.log2(strides[0])) and \
            pooler.map_levels.k_max == round(math.log2(strides[-1]))
