"""A reward ensemble: several independently trained reward clients scored as one.

Each member scores the same groups; per edit the ensemble is the equal-weight mixture of the members' Gaussians.
Its mean is the members' mean (per dimension and for the aggregate ``score``); its variance is the mixture's,
``mean_m sigma_m^2 + var_m mu_m`` (law of total variance), so the members' *disagreement* becomes part of
``sigma`` / ``score_sigma`` — which the ``uncertainty`` reward (``mu - k * sigma``) and best-of-N can penalise
even where each member's own sigma has collapsed. ``disagreement`` (the members' standard deviation of
``score``) is kept apart for logging. An edit any member fails on fails in the ensemble, with that member named.

Spec (``make_reward_client``): ``ensemble:SPEC1,SPEC2,...``, each member a checkpoint folder or ``ray://NAME``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from reward.serve.scorer import ScoredEdit

ENSEMBLE_SCHEME = "ensemble:"


def parse_ensemble_spec(spec: str) -> list[str]:
    """The member specs of ``ensemble:A,B,...``; at least two, none empty."""
    if not spec.startswith(ENSEMBLE_SCHEME):
        raise ValueError(f"not an ensemble spec (expected {ENSEMBLE_SCHEME}A,B,...): {spec!r}")
    members = [m.strip() for m in spec[len(ENSEMBLE_SCHEME):].split(",")]
    if len(members) < 2 or any(not m for m in members):
        raise ValueError(f"{spec!r}: an ensemble needs two or more comma-separated, non-empty member specs")
    return members


def member_specs(spec: str) -> list[str]:
    """The reward specs ``spec`` is made of: the members of ``ensemble:A,B,...``, else ``[spec]`` itself."""
    return parse_ensemble_spec(spec) if spec.startswith(ENSEMBLE_SCHEME) else [spec]


@dataclass
class EnsembleScoredEdit(ScoredEdit):
    """A ``ScoredEdit`` of the mixture, plus the members' spread of ``score`` and their own scores."""

    disagreement: float = math.nan
    member_scores: tuple[float, ...] = ()


def combine(scored: Sequence[ScoredEdit], names: Sequence[str]) -> EnsembleScoredEdit:
    """The equal-weight mixture of one edit's member scores (``names`` label members in an error)."""
    bad = [(n, s.error) for n, s in zip(names, scored) if s.error is not None]
    dims = list(scored[0].mu)
    if bad:
        failed = ScoredEdit.failed(dims, "; ".join(f"ensemble member {n}: {e}" for n, e in bad))
        return EnsembleScoredEdit(**vars(failed), member_scores=tuple(s.score for s in scored))
    for n, s in zip(names, scored):
        if list(s.mu) != dims:
            raise ValueError(f"ensemble member {n} scores dimensions {list(s.mu)}; member {names[0]} scores {dims}")

    def mixture(mus: list[float], sigmas: list[float]) -> tuple[float, float]:
        mean = sum(mus) / len(mus)
        var = sum(sg * sg for sg in sigmas) / len(sigmas) + sum((m - mean) ** 2 for m in mus) / len(mus)
        return mean, math.sqrt(var)

    mu, sigma = {}, {}
    for d in dims:
        mu[d], sigma[d] = mixture([s.mu[d] for s in scored], [s.sigma[d] for s in scored])
    scores = [s.score for s in scored]
    score, score_sigma = mixture(scores, [s.score_sigma for s in scored])
    spread = math.sqrt(sum((x - score) ** 2 for x in scores) / len(scores))
    return EnsembleScoredEdit(mu=mu, sigma=sigma, score=score, score_sigma=score_sigma, disagreement=spread,
                              member_scores=tuple(scores))


class RewardEnsemble:
    """The reward-client protocol over member clients (each anything with ``score_groups``)."""

    def __init__(self, members: Sequence[Any], names: Sequence[str] | None = None):
        if len(members) < 2:
            raise ValueError(f"a reward ensemble needs two or more members, got {len(members)}")
        self.members = list(members)
        self.names = [str(n) for n in names] if names is not None else [f"#{i}" for i in range(len(members))]

    def score_groups(self, groups: Sequence[tuple[Any, str, Sequence[Any]]]) -> list[list[EnsembleScoredEdit]]:
        """One list of mixture scores per (source, instruction, [edited, ...]) group."""
        per_member = [m.score_groups(groups) for m in self.members]
        out = []
        for g, group in enumerate(groups):
            sizes = {len(res[g]) for res in per_member}
            if sizes != {len(group[2])}:
                raise RuntimeError(f"ensemble members returned {sorted(sizes)} scores for group {g} of "
                                   f"{len(group[2])} edits")
            out.append([combine([res[g][i] for res in per_member], self.names) for i in range(len(group[2]))])
        return out

    def score_group(self, source: Any, instruction: str, edited: Sequence[Any]) -> list[EnsembleScoredEdit]:
        """Score candidates of one (source, instruction)."""
        return self.score_groups([(source, instruction, list(edited))])[0]

    def score(self, items: Sequence[Any]) -> list[EnsembleScoredEdit]:
        """Score single edits (``EditInput``-like: ``source``, ``instruction``, ``edited``)."""
        res = self.score_groups([(it.source, it.instruction, [it.edited]) for it in items])
        return [r[0] for r in res]
