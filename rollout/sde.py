"""One stochastic (or deterministic) flow-matching denoising step with its Gaussian log-probability.

This is the Flow-GRPO step (docs/architecture.md, "Online RL"). For sigmas ``s`` -> ``s'`` (``dt = s' - s < 0``),
velocity ``v``, latent ``x`` and noise level ``a``::

    std_t = a * sqrt(s / (1 - s))              # s == 1 uses s' in the denominator (as Flow-GRPO does
                                                #  by reading sigmas[1] there), so the first step is finite
    mean  = x * (1 + std_t^2 / (2 s) * dt) + v * (1 + std_t^2 * (1 - s) / (2 s)) * dt
    x'    = mean + std_t * sqrt(-dt) * eps

``log_prob`` is the log-density of ``x'`` under N(mean, (std_t sqrt(-dt))^2), averaged over every
non-batch dimension. With ``noise_level == 0`` the step is the deterministic Euler (ODE) step
``x + v dt``; its log-probability is defined as 0 (a point mass), and ``std`` is 0.
"""

from __future__ import annotations

import math

import torch


def _per_sample(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A float or (B,) tensor as fp32, broadcastable against ``like`` (B, ...)."""
    t = torch.as_tensor(value, dtype=torch.float32, device=like.device)
    if t.ndim == 0:
        t = t.expand(like.shape[0])
    return t.reshape(-1, *([1] * (like.ndim - 1)))


def sde_step_with_logprob(
    velocity: torch.Tensor,
    sample: torch.Tensor,
    sigma: float | torch.Tensor,
    sigma_next: float | torch.Tensor,
    noise_level: float,
    prev_sample: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Take (or score, when ``prev_sample`` is given) one SDE step; returns ``(prev_sample, log_prob, mean, std)``.

    ``log_prob`` has shape (B,); ``std`` is the per-sample standard deviation of the step, shape (B, 1, ...),
    broadcastable against the sample. Everything is computed in fp32; ``prev_sample`` comes back in the
    input dtype.
    """
    dtype = sample.dtype
    v = velocity.float()
    x = sample.float()
    s = _per_sample(sigma, x)
    s_next = _per_sample(sigma_next, x)
    dt = s_next - s

    if noise_level == 0:
        mean = x + v * dt
        out = mean if prev_sample is None else prev_sample.float()
        return out.to(dtype), torch.zeros(x.shape[0], device=x.device), mean, torch.zeros_like(s)

    denom = torch.where(s >= 1.0, 1.0 - s_next, 1.0 - s)
    std_t = noise_level * torch.sqrt(s / denom)
    mean = x * (1 + std_t**2 / (2 * s) * dt) + v * (1 + std_t**2 * (1 - s) / (2 * s)) * dt
    std = std_t * torch.sqrt(-dt)

    if prev_sample is None:
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)
        prev = mean + std * eps
    else:
        prev = prev_sample.float()

    log_prob = -((prev.detach() - mean) ** 2) / (2 * std**2) - torch.log(std) - 0.5 * math.log(2 * math.pi)
    log_prob = log_prob.mean(dim=tuple(range(1, log_prob.ndim)))
    return prev.to(dtype), log_prob, mean, std
