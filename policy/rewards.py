"""Reward functions for online RL: ``(images, prompts, metadata) -> (rewards (N,), info)``.

``images`` are the N edited images (PIL), ``prompts`` their instructions, ``metadata`` one dict per image
with at least ``"source"`` (the source image) and ``"group"`` (a hashable naming its (source, instruction)
group); editworld prompts also carry ``"task"`` (an ``editworld.tasks.Task``). ``info`` maps names to
per-item float arrays (N,) — logged as means — so a user can plug in their own reward (CLIP similarity, an
OCR check) with the same signature and mix it with the built-in ones.

Built-in (``REWARD_FUNCTIONS``):
- ``editreward``: the reward model's aggregate score (``ScoredEdit.score``);
- ``dimension``: one dimension's mean ``mu_d``;
- ``uncertainty``: ``mu - k * sigma`` of the aggregate (pessimistic where the model is unsure);
- ``oracle``: the editworld pixel oracle (a reference reward; needs ``metadata["task"]``);
- ``mix``: a weighted sum of any of the above.
Rewards from the learned model go through the reward client's ``score_groups`` with consecutive items of
one group sent together, so the service scores them with a shared prefix. An item the client fails on gets
NaN (the online loop gives it zero advantage) and is counted in ``info["reward_error"]``.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Sequence

import numpy as np
import torch

RewardFn = Callable[[Sequence[Any], Sequence[str], Sequence[dict]], tuple[torch.Tensor, dict[str, np.ndarray]]]


def group_runs(metadata: Sequence[dict]) -> list[tuple[Hashable, list[int]]]:
    """Indices of items by group, in first-seen order (items of a group need not be contiguous)."""
    runs: dict[Hashable, list[int]] = {}
    for i, meta in enumerate(metadata):
        if "group" not in meta:
            raise ValueError(f"metadata[{i}] has no 'group' key (the (source, instruction) it belongs to)")
        runs.setdefault(meta["group"], []).append(i)
    return list(runs.items())


def score_with_client(client: Any, images: Sequence[Any], prompts: Sequence[str],
                      metadata: Sequence[dict]) -> list[Any]:
    """One ``ScoredEdit`` per image, scored group by group (one ``score_groups`` call for the whole batch)."""
    _check_lengths(images, prompts, metadata)
    runs = group_runs(metadata)
    groups = [(metadata[idx[0]]["source"], prompts[idx[0]], [images[i] for i in idx]) for _, idx in runs]
    results = client.score_groups(groups)
    scored: list[Any] = [None] * len(images)
    for (_, idx), res in zip(runs, results):
        if len(res) != len(idx):
            raise RuntimeError(f"reward client returned {len(res)} scores for a group of {len(idx)}")
        for i, r in zip(idx, res):
            scored[i] = r
    return scored


def _check_lengths(images: Sequence[Any], prompts: Sequence[str], metadata: Sequence[dict]) -> None:
    if not (len(images) == len(prompts) == len(metadata)):
        raise ValueError(f"{len(images)} images, {len(prompts)} prompts and {len(metadata)} metadata rows differ")
    if len(images) == 0:
        raise ValueError("no images to reward")


def _scored_info(scored: Sequence[Any]) -> dict[str, np.ndarray]:
    """Per-dimension mu / sigma and the aggregate of every item (NaN where the client failed)."""
    dims = next((list(s.mu) for s in scored if s.error is None), [])
    info: dict[str, np.ndarray] = {
        "score": np.array([s.score for s in scored], dtype=np.float64),
        "score_sigma": np.array([s.score_sigma for s in scored], dtype=np.float64),
        "reward_error": np.array([s.error is not None for s in scored], dtype=np.float64),
    }
    if any(hasattr(s, "disagreement") for s in scored):  # a reward ensemble: the members' spread of the score
        info["disagreement"] = np.array([getattr(s, "disagreement", np.nan) for s in scored], dtype=np.float64)
    for d in dims:
        info[f"mu_{d}"] = np.array([s.mu.get(d, np.nan) if s.error is None else np.nan for s in scored])
        info[f"sigma_{d}"] = np.array([s.sigma.get(d, np.nan) if s.error is None else np.nan for s in scored])
    return info


class EditRewardFn:
    """The learned reward through a reward client: aggregate, one dimension, or ``mu - k * sigma``."""

    def __init__(self, client: Any, mode: str = "aggregate", dimension: str = "instruction_following",
                 k: float = 1.0) -> None:
        if mode not in ("aggregate", "dimension", "uncertainty"):
            raise ValueError(f"mode must be aggregate, dimension or uncertainty, got {mode!r}")
        self.client, self.mode, self.dimension, self.k = client, mode, dimension, k

    def __call__(self, images: Sequence[Any], prompts: Sequence[str],
                 metadata: Sequence[dict]) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        scored = score_with_client(self.client, images, prompts, metadata)
        info = _scored_info(scored)
        if self.mode == "aggregate":
            r = info["score"]
        elif self.mode == "uncertainty":
            r = info["score"] - self.k * info["score_sigma"]
        else:
            key = f"mu_{self.dimension}"
            if key not in info and info["reward_error"].min() == 0:
                raise KeyError(f"the reward model has no dimension {self.dimension!r}; "
                               f"it scores {[k[3:] for k in info if k.startswith('mu_')]}")
            r = info.get(key, np.full(len(images), np.nan))
        return torch.as_tensor(np.asarray(r, dtype=np.float64), dtype=torch.float32), info


class OracleRewardFn:
    """The editworld pixel oracle as a reward (or just a logged reference): one dimension or their mean."""

    def __init__(self, dimension: str = "instruction_following") -> None:
        self.dimension = dimension

    def __call__(self, images: Sequence[Any], prompts: Sequence[str],
                 metadata: Sequence[dict]) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        from editworld import DIMENSIONS
        from editworld.oracle import oracle_scores

        _check_lengths(images, prompts, metadata)
        per_dim: dict[str, list[float]] = {d: [] for d in DIMENSIONS}
        for i, (image, meta) in enumerate(zip(images, metadata)):
            if meta.get("task") is None:
                raise ValueError(f"metadata[{i}] has no editworld 'task': the oracle reward needs editworld prompts")
            scores = oracle_scores(meta["task"], image)
            for d in DIMENSIONS:
                per_dim[d].append(float(scores[d]))
        info = {f"oracle_{d}": np.array(v) for d, v in per_dim.items()}
        if self.dimension == "mean":
            r = np.mean([info[f"oracle_{d}"] for d in DIMENSIONS], axis=0)
        elif f"oracle_{self.dimension}" in info:
            r = info[f"oracle_{self.dimension}"]
        else:
            raise KeyError(f"oracle has no dimension {self.dimension!r}; it scores {list(DIMENSIONS)} or 'mean'")
        return torch.as_tensor(r, dtype=torch.float32), info


class MixedRewardFn:
    """A weighted sum of reward functions; ``info`` holds every part's info (prefixed) and reward."""

    def __init__(self, parts: dict[str, tuple[RewardFn, float]]) -> None:
        if not parts:
            raise ValueError("a mixed reward needs at least one part")
        self.parts = parts

    def __call__(self, images: Sequence[Any], prompts: Sequence[str],
                 metadata: Sequence[dict]) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        total = torch.zeros(len(images), dtype=torch.float32)
        info: dict[str, np.ndarray] = {}
        for name, (fn, weight) in self.parts.items():
            r, part_info = fn(images, prompts, metadata)
            if r.shape != (len(images),):
                raise ValueError(f"reward part {name!r} returned shape {tuple(r.shape)} for {len(images)} images")
            total = total + weight * r.float()
            info[f"{name}/reward"] = r.double().numpy()
            info.update({f"{name}/{k}": v for k, v in part_info.items()})
        return total, info


def _editreward(spec: Any, client: Any) -> RewardFn:
    return EditRewardFn(client, "aggregate")


def _dimension(spec: Any, client: Any) -> RewardFn:
    return EditRewardFn(client, "dimension", dimension=spec.dimension)


def _uncertainty(spec: Any, client: Any) -> RewardFn:
    return EditRewardFn(client, "uncertainty", k=spec.k)


def _oracle(spec: Any, client: Any) -> RewardFn:
    return OracleRewardFn(spec.dimension)


def _mix(spec: Any, client: Any) -> RewardFn:
    parts = {}
    for name, weight in spec.mix.items():
        if name == "mix" or name not in REWARD_FUNCTIONS:
            raise KeyError(f"reward.mix: unknown part {name!r}; choose from "
                           f"{[n for n in REWARD_FUNCTIONS if n != 'mix']}")
        parts[name] = (REWARD_FUNCTIONS[name](spec, client), float(weight))
    return MixedRewardFn(parts)


# name -> factory(reward config section, reward client or None) -> reward function
REWARD_FUNCTIONS: dict[str, Callable[[Any, Any], RewardFn]] = {
    "editreward": _editreward,
    "dimension": _dimension,
    "uncertainty": _uncertainty,
    "oracle": _oracle,
    "mix": _mix,
}


def needs_client(spec: Any) -> bool:
    """Whether the reward function named by ``spec`` calls the learned reward model."""
    names = list(spec.mix) if spec.function == "mix" else [spec.function]
    return any(n != "oracle" for n in names)


def build_reward_fn(spec: Any, client: Any = None) -> RewardFn:
    """The reward function a ``RewardSection`` describes; ``client`` is the reward client (None: built from
    ``spec.client`` with ``reward.serve.client.make_reward_client`` when the function needs one)."""
    if spec.function not in REWARD_FUNCTIONS:
        raise KeyError(f"reward.function: unknown {spec.function!r}; choose from {list(REWARD_FUNCTIONS)}")
    if client is None and needs_client(spec):
        from reward.serve.client import make_reward_client

        client = make_reward_client(spec.client, device=spec.device)
    return REWARD_FUNCTIONS[spec.function](spec, client)


__all__ = ["RewardFn", "EditRewardFn", "OracleRewardFn", "MixedRewardFn", "REWARD_FUNCTIONS", "build_reward_fn",
           "needs_client", "score_with_client", "group_runs"]
