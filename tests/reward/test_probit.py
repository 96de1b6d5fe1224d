"""The Thurstone / probit ranking loss, worked by hand, and why the paper's loss drives sigma to 0 (Jensen)."""

import math

import numpy as np
import pytest
import torch

from editrl.config import ConfigError, load_config
from reward.train.config import RewardTrainConfig
from reward.train.loss import LOSSES, dimension_ranking_loss, expected_softplus, probit_loss, probit_nll


def _phi_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _nll(delta: float, s: float) -> float:
    return float(probit_nll(torch.tensor([delta]), torch.tensor([s]))[0])


def test_values_by_hand():
    """-log Phi(0) = log 2; Phi(1) = 0.841345 -> 0.172753; Phi(-1) = 0.158655 -> 1.841022."""
    assert _nll(0.0, 1.0) == pytest.approx(math.log(2.0), abs=1e-12)
    assert _nll(1.0, 1.0) == pytest.approx(0.172753, abs=1e-6)
    assert _nll(-1.0, 1.0) == pytest.approx(1.841022, abs=1e-6)
    assert _nll(2.0, 2.0) == pytest.approx(_nll(1.0, 1.0), abs=1e-12)  # only delta / s matters


def test_aggregated_pair_by_hand():
    """mean aggregation of two dimensions with log_sigma = 0: each aggregated sigma is sqrt(1 + 1) / 2 = 0.7071,
    so s = sqrt(0.5 + 0.5) = 1; mu (1, 1) vs (0, 0) gives delta = 1 -> 0.172753. With sum: delta 2, s = 2 -> same.
    min: the argmin dimension (0 for the winner (1, 3), sigma 1; either for the loser), s = sqrt(2), delta 1."""
    z = torch.zeros(1, 2)
    assert probit_loss(torch.ones(1, 2), z, z, z, "mean").item() == pytest.approx(0.172753, abs=1e-6)
    assert probit_loss(torch.ones(1, 2), z, z, z, "sum").item() == pytest.approx(0.172753, abs=1e-6)
    got = probit_loss(torch.tensor([[1.0, 3.0]]), z, z, z, "min").item()
    assert got == pytest.approx(-math.log(_phi_cdf(1 / math.sqrt(2))), abs=1e-6)
    assert LOSSES["probit"] is probit_loss


@pytest.mark.parametrize("delta,sign", [(1.5, +1), (0.2, +1), (-0.2, -1), (-1.5, -1)])
def test_gradient_sign_in_sigma(delta, sign):
    """dL/ds = phi(r) / Phi(r) * delta / s^2: a right call (delta > 0) is penalised for sigma, a wrong one
    (delta < 0) rewarded: unlike the paper's loss, the probit loss is not smallest at sigma -> 0 for a wrong pair."""
    ls = torch.zeros(1, 1, requires_grad=True)
    loss = probit_loss(torch.tensor([[delta]]), ls, torch.zeros(1, 1), torch.zeros(1, 1), "mean")
    (g,) = torch.autograd.grad(loss, [ls])
    assert math.copysign(1.0, float(g)) == sign
    r = delta / math.sqrt(2.0)  # s = sqrt(1 + 1); d s / d log_sigma_w = exp(2 ls) / s = 1 / sqrt(2)
    by_hand = math.exp(-r * r / 2) / math.sqrt(2 * math.pi) / _phi_cdf(r) * delta / 2.0 / math.sqrt(2.0)
    assert float(g) == pytest.approx(by_hand, rel=1e-6)
    # the paper's loss: more sigma never helps, even when the pair is called wrong
    ls2 = torch.full((1,), -0.3, requires_grad=True)  # s = 0.74 (exactly s = 1 sits on the quadrature's branch edge)
    (g2,) = torch.autograd.grad(expected_softplus(torch.tensor([delta]), ls2.exp()).sum(), [ls2])
    assert float(g2) > 0


def test_probit_sigma_is_the_calibrated_one():
    """80% of pairs at margin d = 1 are right: the expected probit loss 0.8 L(1, s) + 0.2 L(-1, s) is smallest
    where Phi(1 / s) = 0.8, i.e. s = 1 / 0.841621 = 1.18818; the paper's loss is smallest at the smallest s."""
    grid = np.linspace(0.05, 4.0, 3951)
    s = torch.tensor(grid)
    probit = 0.8 * probit_nll(torch.ones_like(s), s) + 0.2 * probit_nll(-torch.ones_like(s), s)
    assert grid[int(probit.argmin())] == pytest.approx(1.18818, abs=2e-3)
    paper = 0.8 * expected_softplus(torch.ones_like(s), s) + 0.2 * expected_softplus(-torch.ones_like(s), s)
    assert int(paper.argmin()) == 0


def test_jensen_the_papers_loss_never_falls_in_sigma():
    """E_{z ~ N(delta, s^2)}[softplus(-z)] >= softplus(-delta) (Jensen: softplus(-z) is convex) and it is
    non-decreasing in s for every delta, right or wrong: on a grid of both, every step in s raises it."""
    deltas = torch.linspace(-8.0, 8.0, 33)
    ss = torch.linspace(1e-4, 6.0, 400)
    table = expected_softplus(deltas[:, None].expand(-1, len(ss)), ss[None, :].expand(len(deltas), -1))
    assert (table.diff(dim=1) >= -1e-12).all()
    assert (table >= torch.nn.functional.softplus(-deltas.double())[:, None] - 1e-12).all()


def test_extremes_are_finite():
    mu_w = torch.tensor([[-50.0, -50.0]], requires_grad=True)
    ls = torch.full((1, 2), -9.0, requires_grad=True)
    loss = probit_loss(mu_w, ls, torch.zeros(1, 2), torch.full((1, 2), -9.0))
    g_mu, g_ls = torch.autograd.grad(loss, [mu_w, ls])
    assert torch.isfinite(loss) and torch.isfinite(g_mu).all() and torch.isfinite(g_ls).all()
    assert (g_ls < 0).all()  # a hopelessly wrong call: raise sigma
    big = probit_loss(torch.full((1, 2), 1e3), torch.full((1, 2), 20.0), torch.zeros(1, 2), torch.full((1, 2), 20.0))
    assert big.item() == pytest.approx(math.log(2.0), abs=1e-3)


def test_dimension_term_probit_by_hand():
    """The pairs of test_loss.py's dimension test with log_sigma = 0 (s = sqrt 2 per term): deltas 1, 1, 2 ->
    (2 (-log Phi(0.70711)) + (-log Phi(1.41421))) / 3 = (2 * 0.274108 + 0.081915) / 3 = 0.210044."""
    mu_w = torch.tensor([[1.0, 0.0], [5.0, 2.0]])
    mu_l = torch.tensor([[0.0, 1.0], [-7.0, 0.0]])
    z = torch.zeros(2, 2)
    sw, sl = torch.tensor([[4.0, 2.0], [3.0, 3.0]]), torch.tensor([[2.0, 3.0], [3.0, 1.0]])
    got = dimension_ranking_loss(mu_w, z, mu_l, z, sw, sl, likelihood="probit").item()
    expected = (2 * -math.log(_phi_cdf(1 / math.sqrt(2))) - math.log(_phi_cdf(2 / math.sqrt(2)))) / 3
    assert got == pytest.approx(expected, abs=1e-7) and got == pytest.approx(0.210044, abs=1e-6)
    with pytest.raises(ValueError, match="likelihood"):
        dimension_ranking_loss(mu_w, z, mu_l, z, sw, sl, likelihood="cauchit")


def test_config_selects_probit_in_the_trainer():
    """data.loss=probit: the trainer's objective is the probit loss plus the probit per-dimension term."""
    from reward.train.trainer import pair_loss

    cfg = load_config(RewardTrainConfig, None, ["data.loss=probit", "data.dimension_loss_weight=0.5"])
    torch.manual_seed(0)
    mu, ls = torch.randn(6, 2), 0.3 * torch.randn(6, 2)
    scores = torch.tensor([[4.0, 3.0], [3.0, 3.0], [2.0, 4.0], [1.0, 2.0], [3.0, 1.0], [2.0, 1.0]])
    want = probit_loss(mu[:3], ls[:3], mu[3:], ls[3:], cfg.model.aggregation) + 0.5 * dimension_ranking_loss(
        mu[:3], ls[:3], mu[3:], ls[3:], scores[:3], scores[3:], likelihood="probit")
    assert pair_loss(cfg, mu, ls, scores).item() == pytest.approx(want.item(), abs=1e-9)
    cfg.data.loss = "uncertainty"
    assert pair_loss(cfg, mu, ls, scores).item() != pytest.approx(want.item(), abs=1e-4)
    with pytest.raises(ConfigError, match="loss"):
        load_config(RewardTrainConfig, None, ["data.loss=thurstone"])


def test_a_collapsed_sigma_gives_a_finite_loss_and_gradient():
    """Fine-tuning a model trained with the paper's loss: sigma ~ 1e-12 on a wrong call (r ~ -1e12). The tail past
    r = -8 is the tangent there: continuous at the knot, linear beyond it (slope phi(-8)/Phi(-8) = 8.1211 per unit
    of r), and the backward pass through the heads stays finite."""
    from reward.train.loss import PROBIT_TAIL

    at = _nll(-PROBIT_TAIL, 1.0)
    assert _nll(-PROBIT_TAIL - 1e-9, 1.0) == pytest.approx(at, abs=1e-6)
    assert _nll(-PROBIT_TAIL - 1.0, 1.0) - at == pytest.approx(8.1211, abs=1e-3)
    assert _nll(-2.0, 1.0) == pytest.approx(3.78318, abs=1e-4)  # untouched above the knot: -log Phi(-2)
    mu_w, mu_l = torch.zeros(3, 2, requires_grad=True), torch.full((3, 2), 2.0, requires_grad=True)
    log_sigma = torch.full((3, 2), -28.0, requires_grad=True)  # sigma 7e-13
    loss = probit_loss(mu_w, log_sigma, mu_l, log_sigma, "mean")
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 1e12
    assert all(torch.isfinite(t.grad).all() for t in (mu_w, mu_l, log_sigma))
