import pytest
import torch
import torch.nn.functional as F

from training.core.grw import GRWLoss, grw_weights


@pytest.mark.parametrize("rho", [0.0, 0.5, 1.0, 1.2, 2.0])
def test_weights_have_mean_one(rho):
    w = grw_weights([500, 100, 20, 4], rho)
    assert float(w.sum()) == pytest.approx(4.0, rel=1e-6)


def test_rho_zero_is_instance_balanced_and_one_is_class_balanced():
    counts = [400, 100, 25]
    assert torch.allclose(grw_weights(counts, 0.0), torch.ones(3))
    w = grw_weights(counts, 1.0)
    # class-balanced: w_c * n_c is the same for every class
    prod = w * torch.tensor(counts, dtype=torch.float32)
    assert torch.allclose(prod, prod[0].expand(3), rtol=1e-5)
    # rho > 1 favours the tail more strongly than rho = 1
    assert grw_weights(counts, 1.5)[2] / grw_weights(counts, 1.5)[0] > w[2] / w[0]


def test_loss_is_weighted_mean_over_batch_not_over_weights():
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    loss = GRWLoss([400, 100, 25], rho=1.0)
    expected = (loss.weight[y] * F.cross_entropy(logits, y, reduction="none")).sum() / 6
    assert float(loss(logits, y)) == pytest.approx(float(expected), rel=1e-6)
    torch_mean = F.cross_entropy(logits, y, weight=loss.weight)  # divides by sum of weights instead
    assert float(loss(logits, y)) != pytest.approx(float(torch_mean), rel=1e-3)
