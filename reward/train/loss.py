"""Reward-model objectives: the multi-dimensional uncertainty-aware ranking loss and its ablations.

Each candidate's dimensions d (instruction following, visual quality) are Gaussians N(mu_d, sigma_d^2),
sigma_d = exp(log_sigma_d). ``aggregate`` turns them into one Gaussian per candidate; the ranking loss of
a winner w over a loser l is

    L = E_{z ~ N(mu_w - mu_l, s_w^2 + s_l^2)} [ -log sigmoid(z) ] = E[softplus(-z)].

The official EditReward / HPSv3 code estimates this expectation with 1000 Monte Carlo samples whose
noise is rounded to fp16 (``estimator="mc"`` reproduces it). We compute it deterministically
(``estimator="quadrature"``):

* for s <= 1, Gauss-Hermite quadrature of softplus(-z) (analytic, poles at distance pi from the real
  axis, so 48 nodes are accurate to far below 1e-6 relative to the Gaussian's width);
* for s > 1, the split softplus(-z) = relu(-z) + log1p(exp(-|z|)): the relu part in closed form,
  E[relu(-z)] = s phi(delta / s) - delta Phi(-delta / s), and the bounded remainder (< 1e-17 beyond
  |z| = 40) by Gauss-Legendre on [0, 40] and [-40, 0] separately, so its kink at 0 sits on a panel edge.

Everything is computed in float64 and returned in the inputs' dtype; gradients reach mu and log_sigma,
and nothing overflows for |mu| <= 1e3 and log_sigma in [-20, 20].
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

AGGREGATIONS = ("mean", "min", "sum", "mean_log_sigma")
_GH_X, _GH_W = (torch.from_numpy(a) for a in np.polynomial.hermite.hermgauss(48))
_PANELS = ((0.0, 2.0), (2.0, 6.0), (6.0, 14.0), (14.0, 40.0))
_GL_X, _GL_W = np.polynomial.legendre.leggauss(24)
_NODES = torch.from_numpy(np.concatenate([(b - a) / 2 * _GL_X + (a + b) / 2 for a, b in _PANELS]))
_WEIGHTS = torch.from_numpy(np.concatenate([(b - a) / 2 * _GL_W for a, b in _PANELS]))


def aggregate(mu: torch.Tensor, log_sigma: torch.Tensor, how: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """One Gaussian per row from (B, D) per-dimension Gaussians; returns (mu, sigma), each (B,).

    mean: mu = mean_d mu_d, var = sum_d var_d / D^2;  min: the argmin-mu dimension;  sum: mu, var summed;
    mean_log_sigma: the released EditReward's pooling, mu = mean_d mu_d, log sigma = mean_d log_sigma_d.
    """
    if how == "mean_log_sigma":
        return mu.mean(-1), torch.exp(log_sigma.float().mean(-1) if log_sigma.dtype in (torch.float16, torch.bfloat16)
                                      else log_sigma.mean(-1))
    var = torch.exp(2 * log_sigma.float() if log_sigma.dtype in (torch.float16, torch.bfloat16) else 2 * log_sigma)
    d = mu.shape[-1]
    if how == "mean":
        return mu.mean(-1), torch.sqrt(var.sum(-1)) / d
    if how == "sum":
        return mu.sum(-1), torch.sqrt(var.sum(-1))
    if how == "min":
        idx = mu.argmin(-1, keepdim=True)
        return mu.gather(-1, idx).squeeze(-1), torch.sqrt(var.gather(-1, idx).squeeze(-1))
    raise ValueError(f"unknown aggregation {how!r}; expected one of {AGGREGATIONS}")


def expected_softplus(delta: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """E[softplus(-z)] for z ~ N(delta, s^2), elementwise, by deterministic quadrature (float64)."""
    delta, s = delta.double(), s.double()
    # narrow Gaussians: Gauss-Hermite on the smooth integrand
    s_small = s.clamp(max=1.0)
    x, w = _GH_X.to(delta.device), _GH_W.to(delta.device)
    z = delta[..., None] + math.sqrt(2.0) * s_small[..., None] * x
    narrow = (F.softplus(-z) * w).sum(-1) / math.sqrt(math.pi)
    # wide Gaussians: exact relu part + panelled Gauss-Legendre on the bounded remainder
    s_big = s.clamp(min=1.0)
    r = delta / s_big
    relu_part = s_big * torch.exp(-0.5 * r * r) / math.sqrt(2 * math.pi) - delta * torch.special.ndtr(-r)
    nodes, weights = _NODES.to(delta.device), _WEIGHTS.to(delta.device)
    bump = torch.log1p(torch.exp(-nodes)) * weights  # the remainder is even in z

    def density(zz: torch.Tensor) -> torch.Tensor:
        u = (zz - delta[..., None]) / s_big[..., None]
        return torch.exp(-0.5 * u * u) / (s_big[..., None] * math.sqrt(2 * math.pi))

    wide = relu_part + ((density(nodes) + density(-nodes)) * bump).sum(-1)
    return torch.where(s <= 1.0, narrow, wide)


def ranking_loss(
    mu_w: torch.Tensor,
    log_sigma_w: torch.Tensor,
    mu_l: torch.Tensor,
    log_sigma_l: torch.Tensor,
    aggregation: str = "mean",
    estimator: str = "quadrature",
    *,
    num_samples: int = 1000,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Uncertainty-aware ranking loss of winners over losers; inputs (B, D), returns the batch mean.
    ``noise`` (B, num_samples), estimator "mc" only: these standard normals instead of drawn ones."""
    a_w, s_w = aggregate(mu_w, log_sigma_w, aggregation)
    a_l, s_l = aggregate(mu_l, log_sigma_l, aggregation)
    delta = (a_w - a_l).double()
    s = torch.sqrt(s_w.double() ** 2 + s_l.double() ** 2)
    if estimator == "quadrature":
        per_pair = expected_softplus(delta, s)
    elif estimator == "mc":
        per_pair = _official_mc(delta, s, num_samples, generator, noise)
    else:
        raise ValueError(f"unknown estimator {estimator!r}; expected 'quadrature' or 'mc'")
    return per_pair.mean().to(mu_w.dtype)


def _official_mc(delta: torch.Tensor, s: torch.Tensor, num_samples: int, generator: torch.Generator | None,
                 noise: torch.Tensor | None = None) -> torch.Tensor:
    """The official EditReward / HPSv3 estimate: ``num_samples`` standard normals per pair drawn in fp32 on the
    generator's device (CPU by default) and rounded to fp16, then z = delta + s * eps, loss = mean softplus(-z).
    With the same generator state this reproduces the official number (up to its fp32 arithmetic)."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if noise is not None:
        if tuple(noise.shape) != (*delta.shape, num_samples):
            raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {(*delta.shape, num_samples)}")
        eps = noise.float().to(delta.device)
    else:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        eps = torch.randn((*delta.shape, num_samples), generator=generator, device=gen_device).to(delta.device)
    eps = eps.to(torch.float16).to(delta.dtype)
    return F.softplus(-(delta[..., None] + s[..., None] * eps)).mean(-1)


def dimension_ranking_loss(mu_w: torch.Tensor, log_sigma_w: torch.Tensor, mu_l: torch.Tensor,
                           log_sigma_l: torch.Tensor, scores_w: torch.Tensor, scores_l: torch.Tensor,
                           likelihood: str = "uncertainty") -> torch.Tensor:
    """The uncertainty-aware ranking loss on each dimension on its own, with that dimension's own label.

    Inputs (B, D). For every (pair, dimension) whose human scores differ, the better image on that dimension is
    the winner of ``E_{z ~ N(mu_a,d - mu_b,d, s_a,d^2 + s_b,d^2)}[-log sigmoid(z)]``; equal scores carry no term.
    Returns the mean over the terms (0 when there are none). It gives each head the dimension it is named after,
    which the aggregated loss only sees mixed with the other dimension. ``likelihood="probit"`` uses the
    Thurstone term ``-log Phi(delta / s)`` (``probit_nll``) instead of the expectation."""
    sign = torch.sign(scores_w.double() - scores_l.double())  # (B, D): +1 winner better on d, -1 loser better
    delta = sign * (mu_w.double() - mu_l.double())
    s = torch.sqrt(torch.exp(2 * log_sigma_w.double()) + torch.exp(2 * log_sigma_l.double()))
    if likelihood not in _PAIR_TERMS:
        raise ValueError(f"unknown likelihood {likelihood!r}; expected one of {tuple(_PAIR_TERMS)}")
    per = _PAIR_TERMS[likelihood](delta, s)
    mask = sign != 0
    if not bool(mask.any()):
        return (mu_w.sum() * 0).to(mu_w.dtype)
    return (per[mask].sum() / mask.sum()).to(mu_w.dtype)


def bradley_terry_loss(score_w: torch.Tensor, score_l: torch.Tensor, aggregation: str | None = None) -> torch.Tensor:
    """Plain Bradley-Terry: mean softplus(-(s_w - s_l)). With ``aggregation``, inputs are (B, D) means
    that are aggregated first (sigmas ignored)."""
    if aggregation is not None and score_w.ndim == 2:
        zeros = torch.zeros_like(score_w)
        score_w, score_l = aggregate(score_w, zeros, aggregation)[0], aggregate(score_l, zeros, aggregation)[0]
    return F.softplus(-(score_w - score_l)).mean()


def pointwise_loss(mu: torch.Tensor, log_sigma: torch.Tensor | None = None, target: torch.Tensor | None = None,
                   *, offset: float = 5.0) -> torch.Tensor:
    """Aggregated score regression (paper eq. 5): MSE between sum_d mu_d and the transformed sum of the
    human scores, T(z_1 + z_2) = z_1 + z_2 - offset; the default offset 5 centres the 1-4 rubric sum (2..8)
    on 0 (the official code subtracts 4.5 from its overall score).

    Eq. 5 uses the means only, so ``log_sigma`` is accepted for a loss signature shared with
    ``ranking_loss`` and ignored. Call as ``pointwise_loss(mu, log_sigma, target)`` or
    ``pointwise_loss(mu, target)``. ``mu`` is (B, D); ``target`` is (B, D) per-dimension human scores or
    (B,) sums already.
    """
    if target is None:
        if log_sigma is None:
            raise ValueError("pointwise_loss needs a target")
        target = log_sigma
    z = target.to(mu.dtype)
    z = z.sum(-1) if z.ndim == mu.ndim else z
    if z.shape != mu.shape[:-1]:
        raise ValueError(f"target shape {tuple(target.shape)} does not fit mu {tuple(mu.shape)}")
    return ((mu.sum(-1) - (z - offset)) ** 2).mean()


def probit_nll(delta: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """-log Phi(delta / s), elementwise in float64: the Thurstone (case V) likelihood of a win by margin
    ``delta`` when the two scores are Gaussians whose difference has standard deviation ``s`` (> 0).

    Unlike the expectation of the paper's loss, which is non-decreasing in s for every delta (Jensen: -log sigmoid
    is convex), this falls in s when delta < 0: a wrong call is cheaper when the model says it is unsure, so the
    likelihood alone does not drive sigma to 0. d/ds = phi(r) / Phi(r) * delta / s^2 with r = delta / s.

    Below r = -PROBIT_TAIL (P < 1e-15) the curve continues along its tangent, so a confidently wrong call by a model
    whose sigma has collapsed (fine-tuning a model trained with the paper's loss: s ~ 1e-12, r ~ -1e12) gives a
    large but finite loss and gradient instead of overflowing the backward pass."""
    r = delta.double() / s.double()
    knot = torch.full_like(r, -PROBIT_TAIL)
    slope = torch.exp(-0.5 * knot ** 2 - torch.special.log_ndtr(knot)) / math.sqrt(2 * math.pi)  # phi/Phi at the knot
    tail = -torch.special.log_ndtr(knot) + slope * (knot - r)
    return torch.where(r < -PROBIT_TAIL, tail, -torch.special.log_ndtr(torch.maximum(r, knot)))


PROBIT_TAIL = 8.0


def probit_loss(mu_w: torch.Tensor, log_sigma_w: torch.Tensor, mu_l: torch.Tensor, log_sigma_l: torch.Tensor,
                aggregation: str = "mean") -> torch.Tensor:
    """Thurstone / probit ranking loss of winners over losers, inputs (B, D), the batch mean of
    ``-log P(w > l)`` with ``P(w > l) = Phi((mu_w - mu_l) / sqrt(s_w^2 + s_l^2))`` on the aggregated Gaussians
    (``aggregate``). The predicted probability is the model's own, so its calibration can be read off sigma."""
    a_w, s_w = aggregate(mu_w, log_sigma_w, aggregation)
    a_l, s_l = aggregate(mu_l, log_sigma_l, aggregation)
    s = torch.sqrt(s_w.double() ** 2 + s_l.double() ** 2)
    return probit_nll(a_w.double() - a_l.double(), s).mean().to(mu_w.dtype)


_PAIR_TERMS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "uncertainty": expected_softplus, "probit": probit_nll}

LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "uncertainty": ranking_loss,
    "probit": probit_loss,
    "bradley_terry": bradley_terry_loss,
    "pointwise": pointwise_loss,
}
