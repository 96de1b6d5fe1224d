"""GRPO pieces; expected values are worked out by hand in each docstring."""

import math

import numpy as np
import pytest
import torch

from policy.advantages import ADVANTAGES, group_advantages
from policy.losses import POLICY_LOSSES, clipped_policy_loss, kl_penalty, policy_loss_stats


def test_group_advantages_by_hand():
    """rewards (1, 2, 3 | 10, 10), groups (a, a, a | b, b).

    Group a: mean 2, population std sqrt((1 + 0 + 1) / 3) = 0.8164966, so A = (-1, 0, 1) / 0.8165966
    = (-1.2245949, 0, 1.2245949). Group b: equal rewards -> 0 (not NaN).
    """
    adv = group_advantages(torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0]), ["a", "a", "a", "b", "b"])
    assert isinstance(adv, torch.Tensor) and adv.dtype == torch.float32
    assert adv.tolist() == pytest.approx([-1.2245949, 0.0, 1.2245949, 0.0, 0.0], abs=1e-6)


def test_group_advantages_global_std_by_hand():
    """Batch mean 5.2; squared deviations 17.64 + 10.24 + 4.84 + 23.04 + 23.04 = 78.8; /5 = 15.76;
    std 3.9698866. Group a: (-1, 0, 1) / 3.9699866 = (-0.2518900, 0, 0.2518900); group b stays 0."""
    adv = group_advantages([1.0, 2.0, 3.0, 10.0, 10.0], [0, 0, 0, 1, 1], global_std=True)
    assert isinstance(adv, np.ndarray)
    assert adv.tolist() == pytest.approx([-0.2518900, 0.0, 0.2518900, 0.0, 0.0], abs=1e-6)
    assert ADVANTAGES["global_std"]()(torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0]), [0, 0, 0, 1, 1]).numpy() == pytest.approx(adv)


def test_group_advantages_interleaved_groups_and_singletons():
    """Order does not matter: group ids may interleave. A singleton group has advantage 0.
    Group x = (0, 4): mean 2, std 2 -> (-2, 2) / 2.0001 = (-0.99995, 0.99995)."""
    adv = group_advantages(torch.tensor([0.0, 7.0, 4.0]), torch.tensor([5, 9, 5]))
    assert adv.tolist() == pytest.approx([-0.99995, 0.0, 0.99995], abs=1e-6)


def test_group_advantages_matches_flow_grpo_stat_tracker_on_random_data():
    """Compared to a direct per-group loop with np.std (what Flow-GRPO's per-prompt tracker does)."""
    rng = np.random.default_rng(0)
    r = rng.normal(size=48)
    ids = [f"p{i % 4}" for i in range(48)]
    got = group_advantages(r, ids)
    for g in set(ids):
        m = np.array([i == g for i in ids])
        assert np.allclose(got[m], (r[m] - r[m].mean()) / (np.std(r[m]) + 1e-4))


def test_group_advantages_bad_input():
    with pytest.raises(ValueError, match="group ids"):
        group_advantages([1.0, 2.0], ["a"])
    with pytest.raises(ValueError, match="no rewards"):
        group_advantages([], [])
    with pytest.raises(ValueError, match="NaN"):
        group_advantages([1.0, float("nan")], ["a", "a"])


def test_clipped_policy_loss_by_hand():
    """clip c = 0.2, adv_clip 5.

    i  ratio  A    -A*ratio  -A*clip(ratio)     max
    1  1.5    2    -3.0      -2*1.2 = -2.4     -2.4   (clipped branch: no gradient)
    2  0.5    2    -1.0      -2*0.8 = -1.6     -1.0
    3  0.5   -1     0.5       0.8               0.8   (clipped)
    4  1.5  -10->-5 7.5       6.0               7.5
    mean = (-2.4 - 1.0 + 0.8 + 7.5) / 4 = 1.225.
    d loss / d logp = -A * ratio / 4 on unclipped rows: row 2 -> -0.25, row 4 -> 7.5 / 4 = 1.875; others 0.
    """
    logp = torch.tensor([math.log(1.5), math.log(0.5), math.log(0.5), math.log(1.5)], requires_grad=True)
    old = torch.zeros(4)
    adv = torch.tensor([2.0, 2.0, -1.0, -10.0])
    loss = clipped_policy_loss(logp, old, adv, clip_range=0.2, adv_clip=5.0)
    assert loss.item() == pytest.approx(1.225, abs=1e-6)
    (grad,) = torch.autograd.grad(loss, logp)
    assert grad.tolist() == pytest.approx([0.0, -0.25, 0.0, 1.875], abs=1e-6)
    assert POLICY_LOSSES["clipped"] is clipped_policy_loss


def test_clipped_policy_loss_on_policy_is_minus_mean_advantage():
    """At ratio 1 the surrogate is -mean(A) = -(1 - 3) / 2 = 1, and its gradient is -A / B."""
    logp = torch.tensor([0.3, -0.7], requires_grad=True)
    loss = clipped_policy_loss(logp, logp.detach().clone(), torch.tensor([1.0, -3.0]), 1e-4, 5.0)
    assert loss.item() == pytest.approx(1.0)
    (grad,) = torch.autograd.grad(loss, logp)
    assert grad.tolist() == pytest.approx([-0.5, 1.5])


def test_policy_loss_stats():
    """ratios (e^0.1, 1): |1.105 - 1| > 0.05 -> clip fraction 1/2; approx KL 0.5 * (0.01 + 0) / 2 = 0.0025."""
    st = policy_loss_stats(torch.tensor([0.1, 0.0]), torch.zeros(2), 0.05)
    assert st.clip_fraction == pytest.approx(0.5) and st.approx_kl == pytest.approx(0.0025)


def test_kl_penalty_by_hand():
    """mean rows (1, 3) and (0, 0), ref 0. Row means of squares: 5 and 0.
    std per sample (1, 2): 5 / 2 = 2.5 and 0 -> 1.25.  Scalar std 0.5: 5 / 0.5 = 10 and 0 -> 5."""
    mean = torch.tensor([[1.0, 3.0], [0.0, 0.0]], requires_grad=True)
    ref = torch.zeros(2, 2)
    assert kl_penalty(mean, ref, torch.tensor([1.0, 2.0])).item() == pytest.approx(1.25)
    assert kl_penalty(mean, ref, torch.tensor([1.0, 2.0]).view(2, 1)).item() == pytest.approx(1.25)
    loss = kl_penalty(mean, ref, 0.5)
    assert loss.item() == pytest.approx(5.0)
    # loss = mean over 2 rows of (m1^2 + m2^2) / 2 / 0.5 = sum(m^2) / 2, so d loss / d m = m
    (g,) = torch.autograd.grad(loss, mean)
    assert g.flatten().tolist() == pytest.approx([1.0, 3.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="positive"):
        kl_penalty(mean, ref, 0.0)


def test_policy_stats_is_the_stats_helper():
    """logp - old = (0, 0.2, -0.4): ratios (1, 1.2214, 0.6703); with clip 0.1 two of three are outside
    -> clip fraction 2/3; approx KL = 0.5 * (0 + 0.04 + 0.16) / 3 = 0.033333."""
    from policy.losses import policy_loss_stats as policy_stats

    st = policy_stats(torch.tensor([0.0, 0.2, -0.4]), torch.zeros(3), clip_range=0.1)
    assert st.clip_fraction == pytest.approx(2 / 3)
    assert st.approx_kl == pytest.approx(0.0333333, abs=1e-6)
