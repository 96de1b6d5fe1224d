"""GRPO for flow-matching editors: group-relative advantages, the clipped surrogate and the KL term.

These are the pure pieces of the Flow-GRPO update (DESIGN.md "Online RL"); the online loop calls them.

* Advantage of sample i in group g:  ``A_i = (r_i - mean_g(r)) / (std + eps)`` where ``std`` is the
  *population* standard deviation (``np.std``, ddof = 0, as Flow-GRPO's per-prompt stat tracker uses)
  of group g, or of the whole batch with ``global_std=True``.
* Policy loss, with ``ratio = exp(logp - logp_old)`` and ``A`` clipped to ``[-adv_clip, adv_clip]``::

      L = mean( max( -A * ratio, -A * clip(ratio, 1 - c, 1 + c) ) )

* KL to the reference policy, for Gaussian steps that share the standard deviation ``std_t``::

      KL = mean_b( mean_{non-batch}((mean_theta - mean_ref)^2) / (2 std_t^2) )
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Hashable, Sequence

import numpy as np
import torch


def group_advantages(
    rewards: torch.Tensor | Sequence[float] | np.ndarray,
    group_ids: Sequence[Hashable] | torch.Tensor | np.ndarray,
    eps: float = 1e-4,
    global_std: bool = False,
) -> torch.Tensor | np.ndarray:
    """Z-score every reward within its group (same source and instruction): how much better than its siblings.

    ``group_ids[i]`` names the group of ``rewards[i]`` (any hashable: a prompt string, an int). The
    standard deviation is the population one (ddof = 0); with ``global_std`` it is that of the whole batch
    instead of the group's, which keeps groups whose rewards barely differ from being blown up. A group
    with a single member, or with equal rewards, gets advantage 0. Returns a tensor (float32, on the input's
    device) if ``rewards`` is a tensor, else a float64 numpy array.
    """
    as_tensor = isinstance(rewards, torch.Tensor)
    r = rewards.detach().double().cpu().numpy() if as_tensor else np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"rewards must be 1-D, got shape {r.shape}")
    ids = group_ids.tolist() if isinstance(group_ids, (torch.Tensor, np.ndarray)) else list(group_ids)
    if len(ids) != len(r):
        raise ValueError(f"{len(r)} rewards but {len(ids)} group ids")
    if len(r) == 0:
        raise ValueError("no rewards")
    if not np.all(np.isfinite(r)):
        raise ValueError("rewards contain NaN or inf")
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(ids):
        members.setdefault(g, []).append(i)
    out = np.empty_like(r)
    batch_std = float(np.std(r))
    for idx in members.values():
        vals = r[idx]
        std = batch_std if global_std else float(np.std(vals))
        out[idx] = (vals - vals.mean()) / (std + eps)
    if as_tensor:
        return torch.from_numpy(out).to(device=rewards.device, dtype=torch.float32)
    return out


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


policy_stats = policy_loss_stats  # the name the task brief and the online loop use


def kl_penalty(mean: torch.Tensor, ref_mean: torch.Tensor, std: torch.Tensor | float) -> torch.Tensor:
    """KL between the current and the reference Gaussian step (same std): keeps the policy near its start.

    ``mean`` and ``ref_mean`` are (B, ...) step means (``rollout.sde.sde_step_with_logprob``); ``std`` is
    the step's standard deviation ``std_t`` as in DESIGN.md — a float or one value per sample ((B,) or
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


ADVANTAGES: dict[str, Callable[..., Any]] = {
    "group": group_advantages,
    "global_std": lambda rewards, group_ids, eps=1e-4: group_advantages(rewards, group_ids, eps, global_std=True),
}
POLICY_LOSSES: dict[str, Callable[..., torch.Tensor]] = {"clipped": clipped_policy_loss}

__all__ = [
    "group_advantages", "clipped_policy_loss", "policy_loss_stats", "policy_stats", "PolicyLossStats", "kl_penalty",
    "ADVANTAGES", "POLICY_LOSSES",
]
