"""The one denoising loop shared by every editor: ODE or Flow-GRPO SDE steps, with the trajectory recorded.

Editors only provide the velocity function, the starting noise and the schedule (``rollout.editor.Editor``);
each step is ``rollout.sde.sde_step_with_logprob`` in fp32, so sampling and the GRPO recomputation of
log-probabilities run the same arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from rollout.sde import sde_step_with_logprob

@dataclass
class Trajectory:
    """A sampled denoising path (what GRPO needs to recompute log-probabilities and the KL term)."""

    latents: torch.Tensor  # (B, T+1, L, C): x_0 = noise ... x_T = final latents
    sigmas: torch.Tensor  # (T+1,) from 1 to 0
    log_probs: torch.Tensor  # (B, T) fp32; 0 where a step was deterministic (ODE)
    means: torch.Tensor  # (B, T, L, C) fp32 mean of each step's Gaussian
    stds: torch.Tensor  # (T,) fp32 std of each step's Gaussian (std_t * sqrt(-dt)); 0 for ODE steps


VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sde_window(num_steps: int, window: int, generator: torch.Generator) -> list[int] | None:
    """``window`` consecutive SDE steps starting at a step drawn from the schedule's first half (Flow-GRPO-Fast /
    MixGRPO); None (every step SDE) when ``window`` is 0. The one rule of the RL sampler and of on-policy data."""
    if window <= 0:
        return None
    if window > num_steps:
        raise ValueError(f"sde_window {window} exceeds num_steps {num_steps}")
    last_start = min(num_steps - window, max(0, num_steps // 2 - 1))
    start = int(torch.randint(0, last_start + 1, (1,), generator=generator, device=generator.device))
    return list(range(start, start + window))


def run_sampler(velocity_fn: VelocityFn, initial: torch.Tensor, sigmas: torch.Tensor, noise_level: float = 0.0,
                generator: torch.Generator | None = None, sde_steps: Sequence[int] | None = None,
                record: bool = False) -> tuple[torch.Tensor, Trajectory | None]:
    """Integrate from ``initial`` (sigma = sigmas[0]) to sigmas[-1]; returns ``(final latents, trajectory)``.

    ``velocity_fn(x, sigma)`` gets fp32 latents and a 0-d sigma. Steps listed in ``sde_steps`` (all steps when it
    is None) use ``noise_level``; the others are Euler ODE steps whose log-probability is recorded as 0.
    The trajectory is None unless ``record``.
    """
    sigmas = sigmas.float().to(initial.device)
    num_steps = sigmas.numel() - 1
    if num_steps < 1:
        raise ValueError(f"need at least one step, got sigmas of shape {tuple(sigmas.shape)}")
    stochastic = set(range(num_steps)) if sde_steps is None else {int(i) for i in sde_steps}
    bad = [i for i in stochastic if not 0 <= i < num_steps]
    if bad:
        raise ValueError(f"sde_steps {sorted(bad)} outside 0..{num_steps - 1}")
    x = initial.float()
    states, means, log_probs, stds = [x], [], [], []
    for i in range(num_steps):
        v = velocity_fn(x, sigmas[i]).float()
        level = noise_level if i in stochastic else 0.0
        x, logp, mean, std = sde_step_with_logprob(v, x, sigmas[i], sigmas[i + 1], level, generator=generator)
        x = x.float()
        if record:
            states.append(x)
            means.append(mean)
            log_probs.append(logp)
            stds.append(std.reshape(-1)[0])
    if not record:
        return x, None
    return x, Trajectory(latents=torch.stack(states, 1), sigmas=sigmas, log_probs=torch.stack(log_probs, 1),
                         means=torch.stack(means, 1), stds=torch.stack(stds))
