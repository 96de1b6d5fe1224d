"""Ranking-loss tests; expected values are worked out by hand or by adaptive quadrature (scipy)."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from reward.loss import aggregate, bradley_terry_loss, expected_softplus, pointwise_loss, ranking_loss


def _reference(delta: float, s: float) -> float:
    """E[softplus(-z)] by adaptive quadrature in the standardised variable u = (z - delta) / s, split
    where softplus bends (z = 0); a high-order reference independent of our nodes."""
    f = lambda u: np.logaddexp(0.0, -(delta + s * u)) * stats.norm.pdf(u)
    kink = -delta / s
    pts = sorted({-12.0, 12.0, *([kink] if -12 < kink < 12 else [])})
    return sum(integrate.quad(f, a, b, epsabs=1e-13, epsrel=1e-12, limit=400)[0] for a, b in zip(pts, pts[1:]))


@pytest.mark.parametrize("delta", [-1000.0, -30.0, -3.0, -0.5, 0.0, 0.7, 4.0, 25.0, 1000.0])
@pytest.mark.parametrize("s", [1e-9, 0.01, 0.3, 1.0, 1.0001, 2.5, 10.0, 300.0, 1e5])
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
