"""The policy losses of online RL for flow-matching editors, as pure functions (``POLICY_LOSSES``).

``policy.updates`` computes their inputs from an editor and a rollout; these functions only do arithmetic, and
``tests/policy/test_losses.py`` checks each against values worked out by hand.

Flow-GRPO's clipped surrogate (``clipped_policy_loss``, with ``kl_penalty``):

* Policy loss, with ``ratio = exp(logp - logp_old)`` and ``A`` clipped to ``[-adv_clip, adv_clip]``::

      L = mean( max( -A * ratio, -A * clip(ratio, 1 - c, 1 + c) ) )

* KL to the reference policy, for Gaussian steps that share the standard deviation ``std_t``::

      KL = mean_b( mean_{non-batch}((mean_theta - mean_ref)^2) / (2 std_t^2) )
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


def clipped_policy_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    clip_range: float,
    adv_clip: float,
) -> torch.Tensor:
    """The PPO-style clipped surrogate that GRPO minimises for one denoising step; returns a scalar.

    ``log_prob`` (B,) is recomputed under the current policy (with gradients), ``old_log_prob`` (B,) was
    recorded at sampling time, ``advantages`` (B,) come from ``group_advantages``. Advantages are clipped
    to ``+-adv_clip``; the ratio is clipped to ``[1 - clip_range, 1 + clip_range]`` and the pessimistic
    (larger) of the two losses is taken per sample.
    """
    if clip_range < 0 or adv_clip <= 0:
        raise ValueError(f"clip_range must be >= 0 and adv_clip > 0, got {clip_range}, {adv_clip}")
    adv = advantages.to(log_prob.dtype).clamp(-adv_clip, adv_clip)
    ratio = torch.exp(log_prob - old_log_prob.detach())
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    return torch.maximum(unclipped, clipped).mean()


@dataclass
class PolicyLossStats:
    """Diagnostics of one update: share of samples whose ratio was clipped, and approx KL(old || new)."""

    clip_fraction: float
    approx_kl: float


def policy_loss_stats(log_prob: torch.Tensor, old_log_prob: torch.Tensor, clip_range: float) -> PolicyLossStats:
    """What to log next to the loss: clip fraction and the quadratic KL estimate ``0.5 * mean((logp - logp_old)^2)``."""
    with torch.no_grad():
        diff = (log_prob - old_log_prob).float()
        ratio = torch.exp(diff)
        clipfrac = ((ratio - 1.0).abs() > clip_range).float().mean().item()
        approx_kl = 0.5 * (diff**2).mean().item()
    return PolicyLossStats(clip_fraction=clipfrac, approx_kl=approx_kl)


def kl_penalty(mean: torch.Tensor, ref_mean: torch.Tensor, std: torch.Tensor | float) -> torch.Tensor:
    """KL between the current and the reference Gaussian step (same std): keeps the policy near its start.

    ``mean`` and ``ref_mean`` are (B, ...) step means (``rollout.sde.sde_step_with_logprob``); ``std`` is
    the step's standard deviation ``std_t`` (``rollout.sde``) — a float or one value per sample ((B,) or
    (B, 1, ...)). Returns ``mean_b( mean_{non-batch}((mean - ref_mean)^2) / (2 std_b^2) )``.
    """
    if mean.shape != ref_mean.shape:
        raise ValueError(f"mean {tuple(mean.shape)} and ref_mean {tuple(ref_mean.shape)} differ in shape")
    sq = ((mean.float() - ref_mean.float().detach()) ** 2).flatten(1).mean(1) if mean.ndim > 1 else \
        (mean.float() - ref_mean.float().detach()) ** 2
    s = torch.as_tensor(std, dtype=torch.float32, device=mean.device)
    if s.numel() != 1:
        if s.numel() != sq.shape[0]:
            raise ValueError(f"std has {s.numel()} values for a batch of {sq.shape[0]}")
        s = s.reshape(-1)
    if torch.any(s <= 0):
        raise ValueError("std must be positive (a deterministic step has no KL penalty)")
    return (sq / (2 * s**2)).mean()


# ---- flow-matching DPO (Diffusion-DPO) and DGPO's group form ----------------------------------------------
# Winner w and loser l of one (source, instruction) are noised with the *same* noise and timestep; the target
# velocity is ``noise - x0``. With per-sample squared errors of the policy (err) and the reference (err_ref):
#     inside = -beta / 2 * ((err_w - err_w_ref) - (err_l - err_l_ref)),   L = mean(softplus(-inside))
# It falls when the policy lowers its error on the winner more than on the loser, relative to the reference.

def velocity_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample flow-matching error (B,): mean over non-batch dims of (pred - target)^2, in float32.

    ``pred`` is the model's velocity, ``target`` the flow-matching target ``noise - x0``; feed the result
    (policy and reference, winner and loser) to ``flow_dpo_loss``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if pred.ndim == 0 or pred.shape[0] == 0:
        raise ValueError(f"expected a non-empty batch (B, ...), got shape {tuple(pred.shape)}")
    return ((pred.float() - target.float()) ** 2).reshape(pred.shape[0], -1).mean(1)


def _per_sample(err: torch.Tensor) -> torch.Tensor:
    err = err.float()
    return err.flatten(1).mean(1) if err.ndim > 1 else err


def flow_dpo_loss(
    err_w: torch.Tensor,
    err_w_ref: torch.Tensor,
    err_l: torch.Tensor,
    err_l_ref: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The flow-matching DPO loss of a batch of pairs and its implicit accuracy; returns ``(loss, accuracy)``.

    Each ``err`` is the squared error of the predicted velocity, either per sample (B,) or unreduced
    (B, ...) — then it is averaged over the non-batch dimensions. Reference errors carry no gradient.
    """
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    ew, el = _per_sample(err_w), _per_sample(err_l)
    ew_ref, el_ref = _per_sample(err_w_ref).detach(), _per_sample(err_l_ref).detach()
    if not (ew.shape == el.shape == ew_ref.shape == el_ref.shape):
        raise ValueError(f"error shapes differ: {[tuple(t.shape) for t in (ew, ew_ref, el, el_ref)]}")
    if ew.numel() == 0:
        raise ValueError("empty batch")
    inside = -0.5 * beta * ((ew - ew_ref) - (el - el_ref))
    loss = F.softplus(-inside).mean()
    accuracy = (inside.detach() > 0).float().mean()
    return loss, accuracy


def group_preference_weights(advantages: torch.Tensor, group_ids: list) -> torch.Tensor:
    """Per-sample weights of the group DPO loss: ``w_i = 2 A_i / sum_{j in group} |A_j|``.

    Within a group of zero-mean advantages the positive weights sum to +1 and the negative ones to -1, so a
    group of two with advantages (+a, -a) gets weights (+1, -1): the pair DPO loss. A group whose advantages are
    all zero gets weights 0 (it teaches nothing).
    """
    adv = advantages.detach().double().cpu()
    if adv.ndim != 1 or len(group_ids) != adv.shape[0]:
        raise ValueError(f"{tuple(adv.shape)} advantages for {len(group_ids)} group ids: expected one per sample")
    weights = torch.zeros_like(adv)
    members: dict = {}
    for i, g in enumerate(group_ids):
        members.setdefault(g, []).append(i)
    for idx in members.values():
        total = float(adv[idx].abs().sum())
        if total > 0:
            weights[idx] = 2.0 * adv[idx] / total
    return weights.float()


def group_dpo_loss(
    err: torch.Tensor,
    err_ref: torch.Tensor,
    advantages: torch.Tensor,
    group_ids: list,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DGPO's group preference loss (Luo et al. 2025, "Reinforcing Diffusion Models by Direct Group Preference
    Optimization"): the DPO sigmoid over a whole group, its samples weighted by their GRPO advantages.

    With ``w = group_preference_weights(advantages, group_ids)`` and the per-sample flow-matching errors of the
    policy (``err``) and the reference (``err_ref``, no gradient), all noised with the group's shared noise and t::

        inside_g = -beta / 2 * sum_{i in g} w_i * (err_i - err_ref_i)
        L        = mean over groups with any non-zero weight of softplus(-inside_g)

    It falls when the policy lowers its error (raises its likelihood) on the group's better-than-average edits
    more than on its worse ones, relative to the reference. For a group of two it is ``flow_dpo_loss``. Returns
    ``(loss, accuracy)``, accuracy the share of groups with ``inside_g > 0``.
    """
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    e, e_ref = _per_sample(err), _per_sample(err_ref).detach()
    if e.shape != e_ref.shape or e.shape[0] != len(group_ids):
        raise ValueError(f"err {tuple(e.shape)}, err_ref {tuple(e_ref.shape)} and {len(group_ids)} group ids differ")
    w = group_preference_weights(advantages, group_ids).to(e.device)
    keys = list(dict.fromkeys(group_ids))
    index = torch.tensor([keys.index(g) for g in group_ids], device=e.device)
    inside = torch.zeros(len(keys), device=e.device).index_add(0, index, -0.5 * beta * w * (e - e_ref))
    live = torch.zeros(len(keys), device=e.device).index_add(0, index, w.abs()) > 0
    if not live.any():
        return e.sum() * 0.0, torch.tensor(0.0)
    loss = F.softplus(-inside[live]).mean()
    accuracy = (inside[live].detach() > 0).float().mean()
    return loss, accuracy


def noised(x0: torch.Tensor, noise: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """The rectified-flow forward process ``x_t = (1 - t) x0 + t noise``; ``t`` is a float or one level per sample
    (shape (B,), broadcast over the other dimensions). Its velocity target is ``noise - x0``."""
    if isinstance(t, torch.Tensor):
        t = t.to(x0.device, x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
    return (1 - t) * x0 + t * noise


# ---- DiffusionNFT (negative-aware fine-tuning on the forward process) -------------------------------------
# Zheng et al. 2025, "DiffusionNFT: Online Diffusion Reinforcement with Forward Process". A sample x0 with
# optimality probability r in [0, 1] is noised to x_t = (1 - t) x0 + t noise; the old (sampling) policy's velocity
# v_old and the trained one v mix into an implicit positive and negative policy
#     v+ = beta v + (1 - beta) v_old,      v- = (1 + beta) v_old - beta v,
# whose x0 predictions x0± = x_t - t v± regress onto x0, each error normalised by its own detached mean absolute
# error (the adaptive weighting):  L± = mean((x0± - x0)^2) / sg(mean|x0± - x0|). With v = v_old the gradient is
# (2r - 1) times the gradient of the normalised x0 error: better-than-average samples are pulled in, worse pushed out.

def nft_optimality(advantages: torch.Tensor, adv_clip: float) -> torch.Tensor:
    """The optimality probability of each sample, ``r = clamp(A / (2 c) + 1/2, 0, 1)`` for advantages ``A`` and
    clip ``c``: an average sample gets 1/2, one ``c`` standard deviations above its group 1."""
    if adv_clip <= 0:
        raise ValueError(f"adv_clip must be positive, got {adv_clip}")
    return (advantages.float().clamp(-adv_clip, adv_clip) / (2 * adv_clip) + 0.5).clamp(0.0, 1.0)


def nft_loss(
    velocity: torch.Tensor,
    old_velocity: torch.Tensor,
    x_t: torch.Tensor,
    x0: torch.Tensor,
    t: torch.Tensor | float,
    optimality: torch.Tensor,
    beta: float,
    adv_clip: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """DiffusionNFT's loss of one batch of noised samples; returns ``(loss, stats)``.

    ``velocity`` (B, ...) is the trained policy's (with gradients), ``old_velocity`` the sampling policy's at the
    same ``x_t`` (no gradient), ``t`` the noise level (float or (B,)), ``optimality`` r (B,) in [0, 1]
    (``nft_optimality``). ``L = adv_clip * mean_b( r L+ + (1 - r) L- ) / beta`` — the scale makes the gradient at
    ``v = v_old`` equal ``A`` times that of the normalised x0 error, whatever ``beta``. Stats: the mean positive
    and negative errors, and the drift ``mean (v - v_old)^2``.
    """
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    if not (velocity.shape == old_velocity.shape == x_t.shape == x0.shape):
        raise ValueError(f"shapes differ: velocity {tuple(velocity.shape)}, old {tuple(old_velocity.shape)}, "
                         f"x_t {tuple(x_t.shape)}, x0 {tuple(x0.shape)}")
    r = optimality.float().reshape(-1)
    if r.shape[0] != velocity.shape[0]:
        raise ValueError(f"{r.shape[0]} optimality values for a batch of {velocity.shape[0]}")
    v, v_old = velocity.float(), old_velocity.float().detach()
    tb = torch.as_tensor(t, dtype=torch.float32, device=v.device)
    tb = tb.reshape(-1, *([1] * (v.ndim - 1))) if tb.ndim else tb
    x_t, x0 = x_t.float(), x0.float()

    def normalised_error(v_mix: torch.Tensor) -> torch.Tensor:
        err = (x_t - tb * v_mix - x0).flatten(1)
        scale = err.detach().abs().mean(1).clamp_min(1e-5)
        return (err**2).mean(1) / scale

    pos = normalised_error(beta * v + (1 - beta) * v_old)
    neg = normalised_error((1 + beta) * v_old - beta * v)
    loss = adv_clip * (r * pos + (1 - r) * neg).mean() / beta
    stats = {"positive_error": float(pos.detach().mean()), "negative_error": float(neg.detach().mean()),
             "drift": float(((v.detach() - v_old) ** 2).mean())}
    return loss, stats


POLICY_LOSSES: dict[str, Callable[..., object]] = {
    "clipped": clipped_policy_loss,
    "flow_dpo": flow_dpo_loss,
    "group_dpo": group_dpo_loss,
    "nft": nft_loss,
}

__all__ = ["clipped_policy_loss", "policy_loss_stats", "PolicyLossStats", "kl_penalty", "velocity_mse",
           "flow_dpo_loss", "group_preference_weights", "group_dpo_loss", "nft_optimality", "nft_loss",
           "POLICY_LOSSES"]
