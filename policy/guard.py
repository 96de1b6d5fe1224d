"""An early-stopping guard for online RL that works with any training reward.

The policy is trained on one reward; a second reward it is never trained on (``eval.guard_reward``: a checkpoint
folder, ``ray://`` service or ``ensemble:...``) scores the same held-out edits at every in-run evaluation. The
policy that reward likes best is kept as a loadable adapter checkpoint in ``<out>/guard-best`` (``rl:<out>/guard-best``
as an editor spec, ``editrl policy margins --checkpoint guard-best``), and with ``eval.guard_patience = P > 0`` the run
stops after P evaluations without a new best: when the training reward keeps rising but an independent one stops,
the policy is learning what only the training reward prefers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from editrl.checkpoint import CheckpointStore

GUARD_DIR = "guard-best"
GUARD_KEY = "eval/guard"


@dataclass
class GuardState:
    """The best held-out guard score so far, where it was reached, and evaluations since."""

    best: float = -math.inf
    best_step: int = -1
    since_best: int = 0

    def observe(self, step: int, value: float) -> bool:
        """Record one evaluation's guard score; True when it is a new best (ties keep the earlier step)."""
        if math.isfinite(value) and value > self.best:
            self.best, self.best_step, self.since_best = float(value), step, 0
            return True
        self.since_best += 1
        return False

    def exhausted(self, patience: int) -> bool:
        """Whether ``patience`` (> 0) evaluations in a row brought no new best."""
        return patience > 0 and self.best_step >= 0 and self.since_best >= patience

    def state(self) -> dict[str, Any]:
        """JSON-able state, saved in every RL checkpoint so a resumed run stops where the unbroken one would."""
        return {**asdict(self), "best": self.best if math.isfinite(self.best) else None}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> "GuardState":
        """The inverse of ``state`` (an empty or missing state: no evaluation seen)."""
        if not state:
            return cls()
        best = state.get("best")
        return cls(-math.inf if best is None else float(best), int(state["best_step"]), int(state["since_best"]))


def guard_score(client: Any, images: list, instructions: list[str], metas: list[dict]) -> float:
    """The guard reward's mean score of the held-out edits (NaN-aware: an edit it fails on does not count)."""
    from policy.rewards import EditRewardFn

    scores, _ = EditRewardFn(client)(images, instructions, metas)
    return float(np.nanmean(scores.numpy()))


def save_guard_best(out: Path, step: int, value: float, named_params: list[tuple[str, torch.nn.Parameter]],
                    write_manifest: Callable[[Path], None]) -> Path:
    """Replace ``<out>/guard-best`` with the adapter as it is after ``step`` (atomic, like every checkpoint)."""
    store = CheckpointStore(out / GUARD_DIR, keep=1)
    return store.save(step, {"guard": value}, {"lora.safetensors": {n: p.detach() for n, p in named_params}},
                      write=write_manifest)


__all__ = ["GUARD_DIR", "GUARD_KEY", "GuardState", "guard_score", "save_guard_best"]
