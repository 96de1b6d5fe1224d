"""SDE step: hand-worked values and consistency with torch.distributions."""

import math

import pytest
import torch

from rollout.sde import sde_step_with_logprob


def test_mean_and_std_by_hand():
    """s = 0.5, s' = 0.25, a = 1: std_t = sqrt(0.5 / 0.5) = 1, dt = -0.25.

    mean = x (1 + 1/(2*0.5) * -0.25) + v (1 + 1*0.5/(2*0.5)) * -0.25 = 0.75 x - 0.375 v
    std = 1 * sqrt(0.25) = 0.5. With x = 2, v = 1: mean = 1.125.
    Scoring prev = 1.125 + 0.5 gives log N(0.5; 0, 0.5^2) = -0.5 - log 0.5 - 0.5 log(2 pi).
    """
    x = torch.full((1, 3), 2.0)
    v = torch.ones(1, 3)
    prev = torch.full((1, 3), 1.625)
    out, logp, mean, std = sde_step_with_logprob(v, x, 0.5, 0.25, 1.0, prev_sample=prev)
    assert torch.allclose(mean, torch.full((1, 3), 1.125))
    assert torch.allclose(std, torch.tensor(0.5))
    expected = -0.5 - math.log(0.5) - 0.5 * math.log(2 * math.pi)
    assert logp.shape == (1,) and logp.item() == pytest.approx(expected, abs=1e-6)
    assert torch.equal(out, prev)


def test_first_step_uses_next_sigma_in_denominator():
    """s = 1, s' = 0.8, a = 0.5: std_t = 0.5 * sqrt(1 / (1 - 0.8)) = 0.5 * sqrt(5); std = std_t * sqrt(0.2) = 0.5."""
    x, v = torch.zeros(2, 4), torch.zeros(2, 4)
    _, _, _, std = sde_step_with_logprob(v, x, 1.0, 0.8, 0.5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(std, torch.tensor(0.5))


def test_sampled_logprob_matches_recomputation_and_normal():
    g = torch.Generator().manual_seed(0)
    x, v = torch.randn(4, 2, 5, 5, generator=g), torch.randn(4, 2, 5, 5, generator=g)
    sig, sig_next = torch.tensor([0.9, 0.7, 0.5, 0.3]), torch.tensor([0.8, 0.6, 0.4, 0.2])
    prev, logp, mean, std = sde_step_with_logprob(v, x, sig, sig_next, 0.7, generator=g)
    _, logp2, _, _ = sde_step_with_logprob(v, x, sig, sig_next, 0.7, prev_sample=prev)
    assert torch.allclose(logp, logp2)
    ref = torch.distributions.Normal(mean, std.expand_as(mean)).log_prob(prev).flatten(1).mean(1)
    assert torch.allclose(logp, ref, atol=1e-5)


def test_bf16_inputs_compute_in_fp32_and_ode_is_euler():
    x, v = torch.randn(2, 8).bfloat16(), torch.randn(2, 8).bfloat16()
    prev, logp, mean, _ = sde_step_with_logprob(v, x, 0.6, 0.4, 0.8, generator=torch.Generator().manual_seed(1))
    assert prev.dtype == torch.bfloat16 and logp.dtype == torch.float32 and mean.dtype == torch.float32
    ode, logp0, _, std0 = sde_step_with_logprob(v, x, 0.6, 0.4, 0.0)
    assert torch.allclose(ode.float(), (x.float() - 0.2 * v.float()).bfloat16().float())
    assert torch.all(logp0 == 0) and torch.all(std0 == 0)


def test_gradient_flows_to_velocity_through_mean():
    v = torch.randn(2, 6, requires_grad=True)
    x = torch.randn(2, 6)
    prev, _, _, _ = sde_step_with_logprob(v.detach(), x, 0.5, 0.4, 0.7, generator=torch.Generator().manual_seed(2))
    _, logp, _, _ = sde_step_with_logprob(v, x, 0.5, 0.4, 0.7, prev_sample=prev)
    logp.sum().backward()
    assert v.grad is not None and torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0
