"""DiffusionNFT (``train.policy_loss=nft``): the pure loss against values worked out by hand, and the update through
the real GRPO CLI."""

import json
import math

import pytest
import torch

from policy.losses import POLICY_LOSSES, nft_loss, nft_optimality


def test_nft_optimality_maps_clipped_advantages_to_probabilities():
    adv = torch.tensor([-10.0, -5.0, 0.0, 2.5, 10.0])
    assert nft_optimality(adv, 5.0).tolist() == [0.0, 0.0, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match="adv_clip"):
        nft_optimality(adv, 0.0)


def test_nft_loss_by_hand():
    """beta 1, adv_clip 5, t 0.5: v+ = v, v- = 2 v_old - v, x0± = x_t - t v±.

    sample 1: x0 (0, 0), x_t (1, 1), v (2, 0), v_old (1, 1), r 1.
      x0+ = (0, 1): err (0, 1), mean|err| 0.5, mean err^2 0.5 -> L+ = 1.
      v- = (0, 2), x0- = (1, 0): L- = 1.               r L+ + (1 - r) L- = 1
    sample 2: x0 (1, -1), x_t (2, 0), v (2, 2), v_old (0, 2), r 0.25.
      x0+ = (1, -1): err 0 -> L+ = 0.
      v- = (-2, 2), x0- = (3, -1): err (2, 0), mean|err| 1, mean err^2 2 -> L- = 2.   0.75 * 2 = 1.5
    loss = 5 * mean(1, 1.5) / 1 = 6.25.
    d loss / d v (scale detached): sample 1, r * dL+/dv = err * (-t) / scale = -err = (0, -1), times 5/2 -> (0, -2.5);
    sample 2, (1 - r) * dL-/dv = 0.75 * err * t / scale = 0.75 * (1, 0), times 5/2 -> (1.875, 0).
    drift: mean (v - v_old)^2 over (1, 1, 4, 0) = 1.5."""
    v = torch.tensor([[2.0, 0.0], [2.0, 2.0]], requires_grad=True)
    v_old = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    x_t = torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    x0 = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    loss, stats = nft_loss(v, v_old, x_t, x0, 0.5, torch.tensor([1.0, 0.25]), beta=1.0, adv_clip=5.0)
    assert loss.item() == pytest.approx(6.25, abs=1e-6)
    assert stats == pytest.approx({"positive_error": 0.5, "negative_error": 1.5, "drift": 1.5})
    (g,) = torch.autograd.grad(loss, v)
    torch.testing.assert_close(g, torch.tensor([[0.0, -2.5], [1.875, 0.0]]))
    assert POLICY_LOSSES["nft"] is nft_loss


def test_nft_gradient_at_the_sampling_policy_is_the_advantage_times_the_x0_error_gradient():
    """At v = v_old both implicit policies are v_old, so the gradient is adv_clip * (2r - 1) = A times the gradient
    of the normalised x0 error, whatever beta; an average sample (r = 1/2) gets none."""
    g = torch.Generator().manual_seed(0)
    v_old = torch.randn(3, 4, 6, generator=g)
    x_t, x0 = torch.randn(3, 4, 6, generator=g), torch.randn(3, 4, 6, generator=g)
    t = torch.tensor([0.2, 0.5, 0.9])
    adv = torch.tensor([2.0, 0.0, -4.0])
    r = nft_optimality(adv, 5.0)
    grads = []
    for beta in (0.1, 1.0, 3.0):
        v = v_old.clone().requires_grad_(True)
        loss, _ = nft_loss(v, v_old, x_t, x0, t, r, beta=beta, adv_clip=5.0)
        grads.append(torch.autograd.grad(loss, v)[0])
    for other in grads[1:]:
        torch.testing.assert_close(other, grads[0], rtol=1e-4, atol=1e-6)
    v = v_old.clone().requires_grad_(True)
    err = (x_t - t.reshape(-1, 1, 1) * v - x0).flatten(1)
    plain = ((err**2).mean(1) / err.detach().abs().mean(1)) * adv / 3  # mean over the batch of 3
    torch.testing.assert_close(grads[0], torch.autograd.grad(plain.sum(), v)[0], rtol=1e-4, atol=1e-6)
    assert grads[0][1].abs().max().item() < 1e-6  # cancels up to rounding


def test_nft_loss_rejects_bad_input():
    v = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="beta"):
        nft_loss(v, v, v, v, 0.5, torch.ones(2), beta=0.0, adv_clip=5.0)
    with pytest.raises(ValueError, match="shapes differ"):
        nft_loss(v, v[:1], v, v, 0.5, torch.ones(2), beta=1.0, adv_clip=5.0)
    with pytest.raises(ValueError, match="optimality"):
        nft_loss(v, v, v, v, 0.5, torch.ones(3), beta=1.0, adv_clip=5.0)


def test_stratified_levels_cover_every_slice():
    from policy.updates import stratified_levels

    levels = stratified_levels(5, 4, 0.2, 1.0, torch.Generator().manual_seed(3))
    assert levels.shape == (4, 5) and levels.min() >= 0.2 and levels.max() <= 1.0
    for i in range(5):  # each sample: one level in each of [0.2, 0.4), [0.4, 0.6), [0.6, 0.8), [0.8, 1.0]
        assert sorted(((levels[:, i] - 0.2) // 0.2).long().clamp(max=3).tolist()) == [0, 1, 2, 3]


def test_the_nft_preset_loads_and_bad_nft_settings_name_their_key():
    from editrl.config import ConfigError, load_config
    from policy.config import GRPOConfig, validate_rl_config

    preset = "configs/policy/editworld-nft.yaml"
    cfg = load_config(GRPOConfig, preset)
    validate_rl_config(cfg)
    assert cfg.train.policy_loss == "nft" and cfg.sampling.noise_level == 0.0
    for overrides, key in ((["train.nft.t_min=0.9", "train.nft.t_max=0.5"], "train.nft.t_min"),
                           (["train.nft.beta=0"], "train.nft.beta"),
                           (["train.policy_loss=group_dpo", "train.nft.timesteps_per_sample=2"], "train.nft: set"),
                           (["train.policy_loss=clipped", "train.nft.kl_beta=0.1"], "train.nft: set")):
        with pytest.raises(ConfigError, match=key):
            validate_rl_config(load_config(GRPOConfig, preset, overrides))
    dgpo = load_config(GRPOConfig, "configs/policy/editworld-grpo.yaml", ["train.policy_loss=clipped",
                                                                         "sampling.noise_level=0"])
    dgpo.train.group_dpo = type(dgpo.train.group_dpo)()
    with pytest.raises(ConfigError, match="sampling.noise_level"):
        validate_rl_config(dgpo)
