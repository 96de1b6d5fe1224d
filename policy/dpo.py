"""Diffusion-DPO for flow-matching editors (DESIGN.md "Online RL").

Winner w and loser l of one (source, instruction) are noised with the *same* noise and timestep; the
target velocity is ``noise - x0``. With per-sample squared errors of the policy (``err``) and of the frozen
reference (``err_ref``), the loss is::

    inside = -beta / 2 * ((err_w - err_w_ref) - (err_l - err_l_ref))
    L      = mean( -log sigmoid(inside) ) = mean( softplus(-inside) )

It falls when the policy lowers its error on the winner more than on the loser, relative to the
reference. The implicit accuracy is the share of pairs with ``inside > 0``: the policy already prefers the
winner more than the reference does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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


POLICY_LOSSES = {"flow_dpo": flow_dpo_loss}

__all__ = ["flow_dpo_loss", "velocity_mse", "POLICY_LOSSES"]
