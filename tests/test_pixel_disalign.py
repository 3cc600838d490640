import pytest
import torch
import torch.nn.functional as F
from torch import nn

from training.core.calibration import DisAlign, PixelDisAlign
from training.core.grw import GRWLoss, grw_weights


def randomised(cal: PixelDisAlign) -> PixelDisAlign:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        cal.alpha.copy_(1 + 0.5 * torch.randn(cal.alpha.shape, generator=g))
        cal.beta.copy_(torch.randn(cal.beta.shape, generator=g))
        cal.confidence.weight.copy_(0.3 * torch.randn(cal.confidence.weight.shape, generator=g))
    return cal


def test_identity_at_init_and_no_relu():
    cal = PixelDisAlign(8, 5)
    x, z = torch.randn(2, 8, 4, 6), torch.randn(2, 5, 4, 6)
    assert torch.equal(cal(x, z), z)
    with torch.no_grad():
        cal.confidence.bias.fill_(-4.0)
    assert cal.sigma(torch.zeros(1, 8, 2, 2)).max().item() < 0.5  # not pinned to [0.5, 1)


def test_each_pixel_is_classification_disalign():
    torch.manual_seed(0)
    pix = randomised(PixelDisAlign(8, 5))
    vec = DisAlign(8, 5)
    with torch.no_grad():
        vec.alpha.copy_(pix.alpha)
        vec.beta.copy_(pix.beta)
        vec.confidence.weight.copy_(pix.confidence.weight[:, :, 0, 0])
        vec.confidence.bias.copy_(pix.confidence.bias)
    x, z = torch.randn(2, 8, 3, 3), torch.randn(2, 5, 3, 3)
    flat = lambda t: t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])  # noqa: E731
    assert torch.allclose(flat(pix(x, z)), vec(flat(x), flat(z)), atol=1e-6)


@pytest.mark.parametrize("mode,channels", [("affine", 6), ("weights", 11)])
def test_fold_into_one_conv_is_exact(mode, channels):
    torch.manual_seed(1)
    head = nn.Conv2d(8, 5, 1)
    cal = randomised(PixelDisAlign(8, 5))
    x = torch.randn(2, 8, 7, 9)
    folded = cal.fold(head, mode)
    assert folded.conv.out_channels == channels
    with torch.no_grad():
        assert torch.allclose(folded(x), cal(x, head(x)), atol=1e-5)
        assert not torch.allclose(folded(x), head(x), atol=1e-2)  # the calibration really changes logits


def test_grw_with_pixel_counts_ignores_255():
    counts = [9000, 900, 90]
    loss = GRWLoss(counts, rho=1.0, ignore_index=255)
    logits = torch.randn(1, 3, 2, 3)
    target = torch.tensor([[[0, 1, 255], [2, 255, 0]]])
    valid = target != 255
    nll = F.cross_entropy(logits, target, reduction="none", ignore_index=255)
    w = grw_weights(counts, 1.0)
    expected = sum(w[target[0, i, j]] * nll[0, i, j] for i in range(2) for j in range(3) if valid[0, i, j]) / 4
    assert loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss(logits, torch.full_like(target, 255)).item() == 0.0
