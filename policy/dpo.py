"""Online DPO for editors (``editrl policy dpo``): rewards become (best, worst) pairs of each reward-ranked group,
trained with Diffusion-DPO's flow-matching loss against a fixed (adapter disabled) or online (a LoRA snapshot
refreshed every N steps) reference. The loop itself is ``policy.loop.train``; config: ``policy.config.DPOConfig``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from policy.config import DPOConfig
from policy.loop import Run, train
from policy.rollouts import Rollout
from policy.updates import LoraSnapshot, best_worst_pairs


class DPO:
    """TARGETS = best-vs-worst pairs (gap > ``min_reward_gap``); UPDATE = ``flow_dpo``; state = the online reference."""

    prefix = "dpo"
    update = "flow_dpo"

    def __init__(self, cfg: DPOConfig, run: Run) -> None:
        self.cfg = cfg.train
        self.snapshot = LoraSnapshot(run.named_params) if cfg.train.reference == "online" else None

    def targets(self, rollout: Rollout, rewards: torch.Tensor, keys: list[str]
                ) -> tuple[list[tuple[int, int]] | None, dict]:
        pairs = best_worst_pairs(rewards, keys, self.cfg.min_reward_gap, self.cfg.pairs_per_group)
        gap = [float(rewards[w] - rewards[l]) for w, l in pairs]
        return pairs or None, {"dpo/pairs": len(pairs), "dpo/reward_gap": sum(gap) / len(gap) if gap else 0.0}

    def reference(self) -> Callable | None:
        return self.snapshot.swapped_in if self.snapshot is not None else None

    def after_update(self, step: int) -> None:
        if self.snapshot is not None and step % max(self.cfg.refresh_every, 1) == 0:
            self.snapshot.refresh()

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        if self.snapshot is None:
            return {}, {}
        return {}, {f"ref.{n}": t for n, t in self.snapshot.tensors.items()}

    def load_state(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        if self.snapshot is not None and tensors:
            device = next(iter(self.snapshot.tensors.values())).device
            self.snapshot.tensors = {n: tensors[f"ref.{n}"].to(device) for n in self.snapshot.tensors}


def train_dpo(cfg: DPOConfig, reward_client: Any = None) -> dict[str, Any]:
    """Run (or resume) online DPO; returns the last metrics row and where things were written."""
    return train(cfg, DPO, reward_client)


__all__ = ["DPO", "train_dpo"]
