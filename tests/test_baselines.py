import argparse

import pytest
import torch
import torch.nn.functional as F

from ltdeploy.datasets.lists import read_split
from training.core.baselines import LWS, NCM, LogitAdjust, RetrainedClassifier, TauNorm
from training.core.heads import CosineHead, LinearHead
from training.core.methods import METHODS, build_calibrator

torch.manual_seed(0)
D, K = 12, 6


def heads():
    return [LinearHead(D, K), CosineHead(D, K)]


def test_tau_norm_matches_formula_and_drops_bias():
    head = LinearHead(D, K)
    cal = TauNorm(D, K)
    cal.set_tau(head, 0.7)
    x = torch.randn(5, D)
    w = head.weight / head.weight.norm(dim=1, keepdim=True) ** 0.7
    assert torch.allclose(cal(x, None), x @ w.T, atol=1e-6)
    cal.set_tau(head, 0.0)
    assert torch.allclose(cal(x, None), head(x) - head.bias, atol=1e-6)


def test_logit_adjustment_matches_formula():
    cal = LogitAdjust(D, K)
    counts = [100, 50, 20, 10, 5, 1]
    cal.set_prior(counts, tau=1.5)
    z = torch.randn(3, K)
    prior = torch.tensor(counts, dtype=torch.float32) / sum(counts)
    assert torch.allclose(cal(None, z), z - 1.5 * prior.log(), atol=1e-5)


def test_ncm_scores_are_negative_squared_distances():
    cal = NCM(D, K)
    feats, labels = torch.randn(60, D), torch.arange(60) % K
    cal.set_means(feats, labels, K)
    x = torch.randn(4, D)
    xn = F.normalize(x - feats.mean(0), dim=1)
    means = torch.stack([F.normalize(feats[labels == c] - feats.mean(0), dim=1).mean(0) for c in range(K)])
    expected = -((xn[:, None, :] - means[None]) ** 2).sum(-1)
    assert torch.allclose(cal(x, None), expected, atol=1e-5)


@pytest.mark.parametrize("make", [LWS, TauNorm, NCM, LogitAdjust, RetrainedClassifier])
@pytest.mark.parametrize("head", heads(), ids=["linear", "cosine"])
def test_every_baseline_folds_exactly(make, head):
    cal = make(D, K)
    with torch.no_grad():
        if isinstance(cal, LWS):
            cal.scale.uniform_(0.5, 2)
        elif isinstance(cal, TauNorm):
            cal.set_tau(head, 1.3)
        elif isinstance(cal, NCM):
            cal.set_means(torch.randn(40, D), torch.arange(40) % K, K)
        elif isinstance(cal, LogitAdjust):
            cal.set_prior([50, 20, 9, 4, 2, 1], 1.0)
        elif isinstance(cal, RetrainedClassifier):
            cal.match_head(head)
            assert bool(cal.cosine) == isinstance(head, CosineHead)
    x = 2 * torch.randn(7, D)
    with torch.no_grad():
        assert torch.allclose(cal.fold(head)(x), cal(x, head(x)), atol=1e-5)


def test_retrained_classifier_on_a_cosine_stage1_learns_small_norm_features():
    """A cosine stage 1 leaves features of norm ~1; the re-trained classifier is cosine there and fits them in
    a stage-2 budget where a linear one at the same lr stays far below."""
    torch.manual_seed(1)
    k, d = 20, 16
    centres = F.normalize(torch.randn(k, d), dim=1)
    labels = torch.arange(2000) % k
    feats = 0.3 * (centres[labels] + 0.15 * torch.randn(2000, d))  # norm ~0.3, well separated in angle
    head = CosineHead(d, k)
    accuracy = {}
    for kind, stage1 in (("linear", LinearHead(d, k)), ("cosine", head)):
        cal = RetrainedClassifier(d, k)
        cal.match_head(stage1)
        opt = torch.optim.SGD(cal.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        for step in range(100):
            i = torch.randint(0, 2000, (64,))
            loss = F.cross_entropy(cal(feats[i], None), labels[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            accuracy[kind] = float((cal(feats, None).argmax(1) == labels).float().mean())
    assert accuracy["cosine"] > 0.95 > accuracy["linear"] + 0.2, accuracy
    # a checkpoint written without the kind buffers loads as a linear classifier
    old = {k: v for k, v in cal.state_dict().items() if k.startswith("fc.")}
    restored = RetrainedClassifier(d, k)
    restored.load_state_dict(old, strict=True)
    assert not bool(restored.cosine) and float(restored.scale) == 1.0


def test_disalign_ablations_freeze_the_right_parameter():
    mag = build_calibrator("disalign-magnitude", D, K)
    margin = build_calibrator("disalign-margin", D, K)
    assert mag.alpha.requires_grad and not mag.beta.requires_grad
    assert margin.beta.requires_grad and not margin.alpha.requires_grad
    lws = build_calibrator("lws", D, K)
    assert [n for n, p in lws.named_parameters() if p.requires_grad] == ["scale"]
    assert all(m.summary for m in METHODS.values())


def test_class_balanced_sampling_is_balanced(digits):
    from ltdeploy.datasets.lists import read_split
    from ltdeploy.preprocess import PreprocessConfig
    from training.classification.backbones import PREPROCESS_DEFAULTS
    from training.classification.features import Stage2Data
    from training.classification.model import LTClassifier

    size, short, interp, mean, std = PREPROCESS_DEFAULTS["small_cnn"]
    args = argparse.Namespace(seed=0, augment=False, no_cache=False, workers=0, batch_size=64, data=str(digits),
                              shift=0, hflip=False)
    model = LTClassifier("small_cnn", "linear", 10)
    model.freeze_stage1()
    data = Stage2Data(model, read_split(str(digits), "train"), PreprocessConfig((size, size), short, interp, mean,
                                                                                std), args)
    seen = torch.cat([y for _ in range(20) for _, y in data.batches(balanced=True)])
    share = torch.bincount(seen, minlength=10).float() / len(seen)
    assert share.min() > 0.07 and share.max() < 0.13  # about 1/10 each, although counts span 104..2
    plain = torch.cat([y for _, y in data.batches(balanced=False)])
    assert torch.equal(torch.bincount(plain, minlength=10), torch.tensor(data.counts))


def test_feature_cache_on_disk_is_reused_and_exact(models, digits, tmp_path):
    import shutil

    from training.train import main as train
    stage1 = tmp_path / "stage1.pt"
    shutil.copy(models["stage1"], stage1)
    outs = [tmp_path / f"{i}.pt" for i in range(3)]
    base = ["stage2", "--checkpoint", str(stage1), "--data", str(digits), "--min-steps", "30"]
    assert train(base + ["--out", str(outs[0])]) == 0
    cache = sorted((tmp_path / "stage1.pt.features").iterdir())
    assert [p.name.split("-")[0] for p in cache] == ["train", "val"]  # val: the run's score
    stamp = cache[0].stat().st_mtime_ns
    assert train(base + ["--out", str(outs[1])]) == 0  # warm cache
    assert cache[0].stat().st_mtime_ns == stamp
    assert train(base + ["--out", str(outs[2]), "--no-cache"]) == 0  # recomputed every epoch
    from training import load_checkpoint
    a, b, c = (load_checkpoint(str(o)).calibrator for o in outs)
    assert torch.equal(a.alpha, b.alpha) and torch.allclose(a.alpha, c.alpha, atol=1e-5)


def test_stage2_val_score_from_cached_features_equals_the_images(models, digits, capsys):
    from training.checkpoints import read_checkpoint
    from training.classification.features import Stage2Data
    from training.classification.train import validate, validate_cached
    from training.config import Stage2Config

    ck = read_checkpoint(str(models["disalign"]))
    ck.model.eval()
    train = read_split(str(digits), "train", num_classes=ck.description.num_classes)
    data = Stage2Data(ck.model, train, ck.description.preprocess, Stage2Config(data=str(digits), no_cache=True))
    cached = validate_cached(ck.model, data, ck.description, "disalign")
    assert cached == validate(ck.model, str(digits), ck.description, "disalign")
    assert 0 < cached["top1"] < 1
