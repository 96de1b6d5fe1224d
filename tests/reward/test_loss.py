"""Ranking-loss tests; expected values are worked out by hand or by adaptive quadrature (scipy)."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

import torch.nn.functional as F

from reward.train.loss import LOSSES, aggregate, bradley_terry_loss, expected_softplus, pointwise_loss, ranking_loss


def _reference(delta: float, s: float) -> float:
    """E[softplus(-z)] by adaptive quadrature in the standardised variable u = (z - delta) / s, split
    where softplus bends (z = 0); a high-order reference independent of our nodes."""
    f = lambda u: np.logaddexp(0.0, -(delta + s * u)) * stats.norm.pdf(u)
    kink = -delta / s
    pts = sorted({-12.0, 12.0, *([kink] if -12 < kink < 12 else [])})
    return sum(integrate.quad(f, a, b, epsabs=1e-13, epsrel=1e-12, limit=400)[0] for a, b in zip(pts, pts[1:]))


HUGE_S = math.exp(20) * math.sqrt(2)  # log_sigma = 20 on both sides
TINY_S = math.exp(-20) * math.sqrt(2)


@pytest.mark.parametrize("delta", [-2000.0, -1000.0, -30.0, -3.0, -0.5, 0.0, 0.7, 4.0, 25.0, 1000.0, 2000.0])
@pytest.mark.parametrize("s", [TINY_S, 0.01, 0.3, 0.999, 1.0, 1.0001, 1.7, 2.5, 10.0, 300.0, 1e5, HUGE_S])
def test_quadrature_matches_reference(delta, s):
    got = expected_softplus(torch.tensor([delta], dtype=torch.float64), torch.tensor([s], dtype=torch.float64)).item()
    ref = _reference(delta, s)
    assert got == pytest.approx(ref, abs=1e-5, rel=1e-7)


def test_zero_uncertainty_is_logistic():
    """s -> 0: the loss is softplus(-delta). delta = 0 -> log 2 = 0.693147."""
    mu_w = torch.tensor([[1.0, 1.0]])
    mu_l = torch.tensor([[1.0, 1.0]])
    ls = torch.full((1, 2), -20.0)
    assert ranking_loss(mu_w, ls, mu_l, ls).item() == pytest.approx(math.log(2), abs=1e-6)


def test_aggregations_by_hand():
    """mu = (1, 3), sigma = (e^0, e^0) = (1, 1).
    mean: mu 2, var (1 + 1) / 4 = 0.5 -> sigma 0.7071;  sum: mu 4, sigma sqrt 2;  min: mu 1, sigma 1."""
    mu, ls = torch.tensor([[1.0, 3.0]]), torch.zeros(1, 2)
    m, s = aggregate(mu, ls, "mean")
    assert (m.item(), s.item()) == pytest.approx((2.0, math.sqrt(0.5)))
    m, s = aggregate(mu, ls, "sum")
    assert (m.item(), s.item()) == pytest.approx((4.0, math.sqrt(2)))
    m, s = aggregate(torch.tensor([[3.0, 1.0]]), torch.tensor([[0.0, math.log(2)]]), "min")
    assert (m.item(), s.item()) == pytest.approx((1.0, 2.0))


def test_mc_agrees_with_quadrature():
    g = torch.Generator().manual_seed(0)
    mu_w, mu_l = torch.randn(64, 2, generator=g), torch.randn(64, 2, generator=g)
    ls_w, ls_l = torch.randn(64, 2, generator=g) * 0.5, torch.randn(64, 2, generator=g) * 0.5
    q = ranking_loss(mu_w, ls_w, mu_l, ls_l)
    mc = ranking_loss(mu_w, ls_w, mu_l, ls_l, estimator="mc", num_samples=20000, generator=g)
    assert mc.item() == pytest.approx(q.item(), abs=5e-3)


def test_extremes_are_finite_with_gradients():
    mu_w = (torch.tensor([[1e3, -1e3], [0.0, 5.0], [-1e3, -1e3]])).requires_grad_()
    mu_l = torch.tensor([[-1e3, 1e3], [0.0, 4.0], [1e3, 1e3]]).requires_grad_()
    ls_w = torch.tensor([[20.0, -20.0], [-20.0, -20.0], [20.0, 20.0]]).requires_grad_()
    ls_l = torch.tensor([[-20.0, 20.0], [0.0, 3.0], [-20.0, -20.0]]).requires_grad_()
    for agg in ("mean", "min", "sum"):
        loss = ranking_loss(mu_w, ls_w, mu_l, ls_l, aggregation=agg)
        grads = torch.autograd.grad(loss, [mu_w, ls_w, mu_l, ls_l])
        assert torch.isfinite(loss)
        assert all(torch.isfinite(g).all() for g in grads)
    loss = ranking_loss(mu_w, ls_w, mu_l, ls_l)
    g_mu, g_ls = torch.autograd.grad(loss, [mu_w, ls_w])
    assert g_mu[1].abs().sum() > 0 and g_ls[1].abs().sum() >= 0


def test_bradley_terry_and_pointwise_by_hand():
    """BT: softplus(-(2 - 1)) = log(1 + e^-1) = 0.313262.  Pointwise: sum mu = 1, T(3 + 4) = 2 -> (1 - 2)^2 = 1."""
    assert bradley_terry_loss(torch.tensor([2.0]), torch.tensor([1.0])).item() == pytest.approx(0.3132617)
    assert pointwise_loss(torch.tensor([[0.5, 0.5]]), torch.tensor([[3.0, 4.0]])).item() == pytest.approx(1.0)


def test_random_points_in_the_hard_range_match_reference():
    """Between the regimes (s of order 1 to 50, |delta| < 25) both branches matter; 40 random points."""
    rng = np.random.default_rng(1)
    d = rng.uniform(-25, 25, size=40)
    s = np.exp(rng.uniform(math.log(0.05), math.log(50), size=40))
    got = expected_softplus(torch.from_numpy(d), torch.from_numpy(s)).numpy()
    ref = np.array([_reference(a, b) for a, b in zip(d, s)])
    assert np.abs(got - ref).max() < 1e-6


def test_wide_gaussian_by_hand():
    """delta = 0, s = 100 (log_sigma = log(100 / sqrt 2) on both sides, D = 1).
    E[softplus(-z)] = E[relu(-z)] + E[log1p(e^-|z|)] ~ s / sqrt(2 pi) + phi(0) / s * pi^2 / 6
    = 39.8942280 + 0.0065624 = 39.9007904 (next term is O(1 / s^3) ~ 1e-6)."""
    ls = torch.full((1, 1), math.log(100 / math.sqrt(2)))
    got = ranking_loss(torch.zeros(1, 1), ls, torch.zeros(1, 1), ls, estimator="quadrature")
    assert got.item() == pytest.approx(39.9007904, abs=2e-5)


def test_mc_reproduces_official_code_with_the_same_seed():
    """The official loss (EditReward VLMRewardTrainer, loss_type 'uncertainty'), written out here:
    z = randn(B, 1000).to(fp16) * sigma_z + mean_z;  loss = -logsigmoid(z).mean()."""
    g = torch.Generator().manual_seed(0)
    mu_w, mu_l = torch.randn(8, 2, generator=g), torch.randn(8, 2, generator=g)
    ls_w, ls_l = torch.randn(8, 2, generator=g) * 0.5, torch.randn(8, 2, generator=g) * 0.5
    m_w, s_w = aggregate(mu_w, ls_w, "sum")
    m_l, s_l = aggregate(mu_l, ls_l, "sum")
    mean_z, sigma_z = m_w - m_l, torch.sqrt(s_w**2 + s_l**2)
    z = torch.randn(8, 1000, generator=torch.Generator().manual_seed(7)).to(torch.float16) * sigma_z[:, None] + mean_z[:, None]
    official = -F.logsigmoid(z).mean()
    ours = ranking_loss(mu_w, ls_w, mu_l, ls_l, aggregation="sum", estimator="mc",
                        generator=torch.Generator().manual_seed(7))
    assert ours.item() == pytest.approx(official.item(), abs=1e-5)
    again = ranking_loss(mu_w, ls_w, mu_l, ls_l, aggregation="sum", estimator="mc",
                         generator=torch.Generator().manual_seed(7))
    assert torch.equal(ours, again)


def test_gradients_match_finite_differences_in_both_regimes():
    """float64 gradcheck at points with s < 1 and s > 1 (the quadrature switches regime at s = 1)."""
    mu_w = torch.tensor([[0.3, -0.2], [2.0, 1.0], [0.0, 5.0]], dtype=torch.float64, requires_grad=True)
    mu_l = torch.tensor([[0.1, 0.4], [-1.0, 0.5], [1.0, 1.3]], dtype=torch.float64, requires_grad=True)
    ls_w = torch.tensor([[-2.0, -1.0], [0.5, 1.0], [2.0, -3.0]], dtype=torch.float64, requires_grad=True)
    ls_l = torch.tensor([[-1.5, -2.5], [0.0, 0.7], [1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    for agg in ("mean", "sum", "min"):
        assert torch.autograd.gradcheck(lambda a, b, c, d: ranking_loss(a, b, c, d, aggregation=agg),
                                        (mu_w, ls_w, mu_l, ls_l), eps=1e-6, atol=1e-6)


def test_loss_falls_when_winner_rises_and_uncertainty_hurts_a_confident_right_call():
    """d L / d mu_w < 0 always; when delta > 0 is already right, more sigma raises the loss (d L/d log_sigma > 0)."""
    mu_w = torch.tensor([[2.0, 2.0]], requires_grad=True)
    ls_w = torch.tensor([[0.0, 0.0]], requires_grad=True)
    loss = ranking_loss(mu_w, ls_w, torch.zeros(1, 2), torch.zeros(1, 2))
    g_mu, g_ls = torch.autograd.grad(loss, [mu_w, ls_w])
    assert (g_mu < 0).all() and (g_ls > 0).all()


def test_low_precision_inputs_and_errors():
    mu = torch.randn(4, 2).bfloat16()
    loss = ranking_loss(mu, torch.zeros(4, 2).bfloat16(), mu.flip(0), torch.zeros(4, 2).bfloat16())
    assert loss.dtype == torch.bfloat16 and torch.isfinite(loss)
    with pytest.raises(ValueError, match="aggregation"):
        aggregate(mu.float(), mu.float(), "median")
    with pytest.raises(ValueError, match="estimator"):
        ranking_loss(mu, mu, mu, mu, estimator="laplace")


def test_pointwise_three_argument_form_and_registry():
    """Eq. 5 ignores sigma: (mu, log_sigma, target) == (mu, target). Target given as sums (B,):
    sum mu = 3, T(9) = 4 -> (3 - 4)^2 = 1; with sums 7 -> T = 2 -> 1 again; mean 1."""
    mu = torch.tensor([[1.0, 2.0], [1.5, 1.5]])
    t = torch.tensor([[4.0, 5.0], [3.0, 4.0]])
    assert pointwise_loss(mu, torch.randn(2, 2), t).item() == pytest.approx(1.0)
    assert pointwise_loss(mu, t).item() == pytest.approx(1.0)
    assert pointwise_loss(mu, t.sum(-1)).item() == pytest.approx(1.0)
    assert set(LOSSES) >= {"uncertainty", "bradley_terry", "pointwise"}


def test_dimension_ranking_loss_by_hand():
    """Two pairs, two dimensions, sigmas ~0 (log_sigma = -20), so each term is softplus(-delta):

    pair 0: scores w (4, 2) vs l (2, 3): d0 winner better, delta = mu_w - mu_l = 1 - 0 = 1; d1 loser better, so
            delta = mu_l - mu_w = 1 - 0 = 1. Terms softplus(-1), softplus(-1).
    pair 1: scores w (3, 3) vs l (3, 1): d0 equal (no term); d1 winner better, delta = 2 - 0 = 2 -> softplus(-2).
    Mean of the three terms = (2 * 0.313262 + 0.126928) / 3 = 0.251151.
    """
    from reward.train.loss import dimension_ranking_loss

    mu_w = torch.tensor([[1.0, 0.0], [5.0, 2.0]], requires_grad=True)
    mu_l = torch.tensor([[0.0, 1.0], [-7.0, 0.0]])
    ls = torch.full((2, 2), -20.0)
    sw, sl = torch.tensor([[4.0, 2.0], [3.0, 3.0]]), torch.tensor([[2.0, 3.0], [3.0, 1.0]])
    loss = dimension_ranking_loss(mu_w, ls, mu_l, ls, sw, sl)
    expected = (2 * math.log1p(math.exp(-1.0)) + math.log1p(math.exp(-2.0))) / 3
    assert abs(loss.item() - expected) < 1e-6 and abs(expected - 0.251151) < 1e-6
    loss.backward()
    assert mu_w.grad[1, 0] == 0  # the tied dimension carries no gradient
    assert mu_w.grad[0, 0] < 0 and mu_w.grad[0, 1] > 0  # push the better image up on each dimension
    none = dimension_ranking_loss(mu_w, ls, mu_l, ls, sw, sw)  # all equal: no terms, zero loss
    assert none.item() == 0.0
