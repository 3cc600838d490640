import pytest
import torch

from training.classification.model import LTClassifier
from training.core.calibration import DisAlign
from training.core.heads import CosineHead, LinearHead


def randomise(cal: DisAlign, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        cal.alpha.copy_(1 + 0.5 * torch.randn(cal.alpha.shape, generator=g))
        cal.beta.copy_(torch.randn(cal.beta.shape, generator=g))
        cal.confidence.weight.copy_(0.3 * torch.randn(cal.confidence.weight.shape, generator=g))
        cal.confidence.bias.fill_(0.2)


def test_starts_as_identity():
    cal = DisAlign(8, 5)
    x, z = torch.randn(4, 8), torch.randn(4, 5)
    assert torch.equal(cal(x, z), z)


def test_matches_paper_formula():
    cal = DisAlign(8, 5)
    randomise(cal)
    x, z = torch.randn(4, 8), torch.randn(4, 5)
    s = torch.sigmoid(x @ cal.confidence.weight.T + cal.confidence.bias)
    expected = s * (cal.alpha * z + cal.beta) + (1 - s) * z
    assert torch.allclose(cal(x, z), expected, atol=1e-6)
    # sigma is not pinned to [0.5, 1): no ReLU before the sigmoid
    with torch.no_grad():
        cal.confidence.bias.fill_(-5.0)
    assert cal.sigma(torch.zeros(1, 8)).item() == pytest.approx(float(torch.sigmoid(torch.tensor(-5.0))))


@pytest.mark.parametrize("head_cls", [LinearHead, CosineHead])
@pytest.mark.parametrize("mode", ["affine", "weights"])
def test_fold_is_exact(head_cls, mode):
    torch.manual_seed(0)
    head = head_cls(16, 7)
    cal = DisAlign(16, 7)
    randomise(cal, 1)
    x = 3 * torch.randn(10, 16)
    ref = cal(x, head(x))
    folded = cal.fold(head, mode)
    assert torch.allclose(folded(x), ref, atol=1e-5)


def test_freeze_stage1_keeps_batchnorm_statistics_and_weights():
    torch.manual_seed(0)
    model = LTClassifier("small_cnn", "linear", 4)
    model.freeze_stage1()
    model.calibrator = DisAlign(model.feat_dim, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(3):
        loss = model(torch.randn(8, 3, 32, 32)).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("calibrator.") for k in changed), changed
    assert {n for n, p in model.named_parameters() if p.requires_grad} == \
        {"calibrator.alpha", "calibrator.beta", "calibrator.confidence.weight", "calibrator.confidence.bias"}


def test_linear_probe_trains_only_the_head(digits, seg_runs, tmp_path, capsys):
    from training.train import main as train

    out = tmp_path / "probe.pt"
    assert train(["stage1", "--data", str(digits), "--out", str(out), "--epochs", "1", "--freeze-backbone",
                  "--seed", "3"]) == 0
    ck = torch.load(out, weights_only=True)
    torch.manual_seed(3)  # the same initial model the run built
    fresh = LTClassifier("small_cnn", "linear", 10).state_dict()
    state = ck["state_dict"]
    backbone = [k for k in fresh if k.startswith("backbone.")]
    assert any("running_mean" in k for k in backbone)  # BatchNorm statistics are among what must not move
    assert all(torch.equal(state[k], fresh[k]) for k in backbone)
    assert not torch.equal(state["head.weight"], fresh["head.weight"])
    assert ck["description"]["provenance"]["frozen_backbone"] is True
    data, _ = seg_runs
    capsys.readouterr()
    assert train(["stage1", "--data", str(data), "--out", str(tmp_path / "seg.pt"), "--freeze-backbone"]) == 2
    assert "segmentation stage1 does not use --freeze-backbone" in capsys.readouterr().err and not (tmp_path / "seg.pt").exists()
