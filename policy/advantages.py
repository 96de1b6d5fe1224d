"""How rewards become GRPO advantages: group z-scores, or z-scores against each prompt's reward history.

``ADVANTAGES`` maps ``train.advantage`` to an estimator: ``make_advantage(name, ...)`` returns an object with
``__call__(rewards, keys) -> advantages`` and ``state_dict`` / ``load_state_dict`` (what a checkpoint keeps).

* Advantage of sample i in group g:  ``A_i = (r_i - mean_g(r)) / (std + eps)``, ``std`` the *population*
  standard deviation (ddof = 0, as Flow-GRPO's per-prompt stat tracker uses) of group g, or of the whole batch
  (``global_std``); a group with one member or equal rewards gets 0.
"""

from __future__ import annotations

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


class PromptStatTracker:
    """Per-prompt reward history across steps (Flow-GRPO): advantages against each prompt's running mean/std."""

    def __init__(self, history: int = 64) -> None:
        self.history = history
        self.stats: dict[str, list[float]] = {}

    def advantages(self, rewards: np.ndarray, keys: Sequence[str], eps: float = 1e-4) -> np.ndarray:
        """Add this step's rewards to each prompt's history and z-score them against it."""
        out = np.empty(len(rewards), dtype=np.float64)
        for key in dict.fromkeys(keys):
            idx = [i for i, k in enumerate(keys) if k == key]
            hist = (self.stats.get(key, []) + [float(rewards[i]) for i in idx])[-self.history:]
            self.stats[key] = hist
            mean, std = float(np.mean(hist)), float(np.std(hist))
            out[idx] = (rewards[idx] - mean) / (std + eps) if std > 0 else 0.0
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "stats": self.stats}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = int(state["history"])
        self.stats = {k: [float(x) for x in v] for k, v in state["stats"].items()}


def zero_advantage_fraction(rewards: torch.Tensor, keys: Sequence[Hashable]) -> float:
    """Share of groups whose rewards are all equal: they teach GRPO nothing."""
    groups: dict[Hashable, list[float]] = {}
    for r, k in zip(rewards.tolist(), keys):
        groups.setdefault(k, []).append(r)
    return float(np.mean([np.ptp(v) < 1e-8 for v in groups.values()]))


class GroupAdvantage:
    """Stateless group z-scores (``global_std``: the batch's std in the denominator)."""

    def __init__(self, eps: float = 1e-4, global_std: bool = False, **_: Any) -> None:
        self.eps, self.global_std = eps, global_std

    def __call__(self, rewards: torch.Tensor, keys: Sequence[Hashable]) -> torch.Tensor:
        return group_advantages(rewards, keys, eps=self.eps, global_std=self.global_std)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class PerPromptAdvantage:
    """Z-scores against each prompt's reward history across steps (``PromptStatTracker``), checkpointed."""

    def __init__(self, eps: float = 1e-4, history: int = 64, **_: Any) -> None:
        self.eps, self.tracker = eps, PromptStatTracker(history)

    def __call__(self, rewards: torch.Tensor, keys: Sequence[Hashable]) -> torch.Tensor:
        return torch.from_numpy(self.tracker.advantages(rewards.double().numpy(), list(keys), self.eps)).float()

    def state_dict(self) -> dict[str, Any]:
        return self.tracker.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tracker.load_state_dict(state)


ADVANTAGES: dict[str, Callable[..., Any]] = {
    "group": GroupAdvantage,
    "global_std": lambda **kw: GroupAdvantage(global_std=True, **kw),
    "per_prompt": PerPromptAdvantage,
}


def make_advantage(name: str, eps: float = 1e-4, history: int = 64) -> Any:
    """The advantage estimator ``train.advantage`` names."""
    if name not in ADVANTAGES:
        raise ValueError(f"unknown advantage {name!r}; known: {', '.join(ADVANTAGES)}")
    return ADVANTAGES[name](eps=eps, history=history)


__all__ = ["group_advantages", "zero_advantage_fraction", "PromptStatTracker", "GroupAdvantage", "PerPromptAdvantage",
           "ADVANTAGES", "make_advantage"]
