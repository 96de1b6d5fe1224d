"""GRPO for editors (``editrl policy grpo``): rewards become group-relative advantages, which train the policy
through ``train.policy_loss`` — DGPO's group preference loss (``group_dpo``), DiffusionNFT (``nft``) or Flow-GRPO's
clipped surrogate (``clipped``). The loop itself is ``policy.loop.train``; config: ``policy.config.GRPOConfig``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from policy.advantages import make_advantage
from policy.config import GRPOConfig
from policy.loop import Run, train
from policy.rollouts import Rollout


class GRPO:
    """TARGETS = advantages (``policy.advantages.ADVANTAGES[train.advantage]``); UPDATE = ``train.policy_loss``."""

    prefix = "train"

    def __init__(self, cfg: GRPOConfig, run: Run | None = None) -> None:
        t = cfg.train
        self.update = t.policy_loss
        self.advantage = make_advantage(t.advantage, eps=t.adv_eps, history=t.stats_history)

    def targets(self, rollout: Rollout, rewards: torch.Tensor, keys: list[str]) -> tuple[torch.Tensor, dict]:
        adv = self.advantage(rewards, keys)
        return adv, {"advantage_abs_mean": float(adv.abs().mean())}

    def reference(self) -> Callable | None:
        return None

    def after_update(self, step: int) -> None:
        pass

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"advantage": self.advantage.state_dict()}, {}

    def load_state(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.advantage.load_state_dict(state.get("advantage", {}))


def train_grpo(cfg: GRPOConfig, reward_client: Any = None) -> dict[str, Any]:
    """Run (or resume) GRPO; returns the last metrics row and where things were written."""
    return train(cfg, GRPO, reward_client)


__all__ = ["GRPO", "train_grpo"]
