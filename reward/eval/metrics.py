"""Agreement between a reward model and human judgements (paper section 4.2, official ``eval_bench.py``).

* ``pairwise_accuracy_with_ties`` — Deutsch et al. 2023 (arXiv 2305.14324) tie calibration: the model
  calls a pair tied when ``|diff| <= eps``; eps is chosen to maximise
  ``(C + T_hm) / (C + D + T_h + T_m + T_hm)`` (the denominator is every pair, n).
* ``pairwise_accuracy`` — accuracy over the pairs humans did not tie.
* ``strict_group_accuracy`` — EditReward-Bench K-way groups: a group counts only if all C(K, 2) pairwise
  relations are right.
* ``spearman_fisher_mean`` — ImagenHub: Spearman within each editing model, averaged through Fisher z.
* ``position_bias`` — how much a pairwise judge's accuracy depends on the order it sees the pair in.

Inputs may be torch tensors, numpy arrays or sequences; empty input raises ValueError everywhere.
These are editrl's corrected metrics; the official protocol's own versions, quirks included (its "paper"
tie metric, 2-pair-only calibration, tanh(mean r), ...), are in ``reward.eval.official_protocol``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any, Callable, Sequence

import numpy as np

FISHER_CLIP = 0.999999


def _as_1d(values: Any, name: str) -> np.ndarray:
    """A finite float64 vector from a tensor / array / sequence; ValueError naming ``name`` otherwise."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    arr = np.asarray(values, dtype=np.float64).reshape(-1) if np.ndim(values) <= 1 else None
    if arr is None:
        raise ValueError(f"{name}: expected a 1-D sequence, got shape {np.shape(values)}")
    if arr.size == 0:
        raise ValueError(f"{name}: empty input")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or inf at index {int(np.flatnonzero(~np.isfinite(arr))[0])}")
    return arr


def _diff_and_label(model_diff: Any, human_label: Any) -> tuple[np.ndarray, np.ndarray]:
    diff, label = _as_1d(model_diff, "model_diff"), _as_1d(human_label, "human_label")
    if diff.shape != label.shape:
        raise ValueError(f"model_diff has {diff.size} pairs but human_label has {label.size}")
    return diff, np.sign(label)


def pairwise_accuracy_with_ties(model_diff: Any, human_label: Any) -> tuple[float, float]:
    """Tie-calibrated pairwise accuracy and the threshold that achieves it: returns (accuracy, eps).

    ``model_diff[i]`` is score(first) - score(second); ``human_label[i]`` > 0 when humans prefer the
    first, < 0 the second, 0 for a tie. With model tie = ``|diff| <= eps``, a pair scores 1 when both
    tie (T_hm) or neither ties and the signs agree (C); T_h, T_m and D score 0. The candidates for eps
    are 0 and every distinct ``|diff|``; the smallest eps reaching the maximum is returned.

    O(n log n): sorting by |diff|, moving eps past a pair changes the score by (human tie) - (concordant).
    """
    diff, label = _diff_and_label(model_diff, human_label)
    mag = np.abs(diff)
    concordant = (label != 0) & (np.sign(diff) == label)   # scores 1 while the model does not tie it
    human_tie = label == 0                                  # scores 1 once the model ties it
    order = np.argsort(mag, kind="stable")
    mag_sorted = mag[order]
    gain = np.cumsum(human_tie[order].astype(np.int64) - concordant[order].astype(np.int64))
    # eps = v ties every pair with |diff| <= v: take the cumulative gain at the last index of each value
    values, counts = np.unique(mag_sorted, return_counts=True)
    last = np.cumsum(counts) - 1
    scores = int(concordant.sum()) + gain[last]
    candidates, cand_scores = values, scores
    if values[0] > 0:  # eps = 0 ties nothing
        candidates = np.concatenate([[0.0], values])
        cand_scores = np.concatenate([[int(concordant.sum())], scores])
    best = int(np.argmax(cand_scores))  # first maximum = smallest eps
    return float(cand_scores[best]) / diff.size, float(candidates[best])


def pairwise_accuracy(model_diff: Any, human_label: Any) -> float:
    """Accuracy over the pairs humans did not tie: right iff sign(diff) == sign(label).

    A model difference of exactly 0 on a non-tied pair counts as wrong (the model failed to decide).
    """
    diff, label = _diff_and_label(model_diff, human_label)
    keep = label != 0
    if not keep.any():
        raise ValueError("pairwise_accuracy: every pair is a human tie; nothing to score")
    return float(np.mean(np.sign(diff[keep]) == label[keep]))


def parse_ranking(ranking: str, num_candidates: int | None = None) -> list[int]:
    """Rank level per candidate from a ranking such as ``"C>A>B"`` or ``"A=B>C"`` (0 = best level).

    Letter k names candidate k (A = 0). Every candidate must appear exactly once; with
    ``num_candidates`` the letters must be exactly the first K. Malformed -> ValueError naming it.
    """
    if not isinstance(ranking, str):
        raise ValueError(f"ranking {ranking!r}: expected a string such as 'C>A>B'")
    text = ranking.replace(" ", "")
    levels: dict[int, int] = {}
    for level, tier in enumerate(text.split(">")):
        for letter in tier.split("="):
            if len(letter) != 1 or not ("A" <= letter <= "Z"):
                raise ValueError(f"ranking {ranking!r}: bad token {letter!r}; expected capital letters joined by '>' or '='")
            idx = ord(letter) - ord("A")
            if idx in levels:
                raise ValueError(f"ranking {ranking!r}: candidate {letter} appears twice")
            levels[idx] = level
    k = len(levels) if num_candidates is None else num_candidates
    if sorted(levels) != list(range(k)):
        raise ValueError(f"ranking {ranking!r}: expected each of the letters "
                         f"{''.join(chr(ord('A') + i) for i in range(k))} exactly once")
    if k < 2:
        raise ValueError(f"ranking {ranking!r}: a group needs at least 2 candidates")
    return [levels[i] for i in range(k)]


def _group_correct(scores: np.ndarray, levels: list[int], eps: float) -> bool:
    for i, j in combinations(range(len(levels)), 2):
        gap = scores[i] - scores[j]
        if levels[i] == levels[j]:
            ok = abs(gap) <= eps
        elif levels[i] < levels[j]:   # humans rank i above j
            ok = gap > eps
        else:
            ok = -gap > eps
        if not ok:
            return False
    return True


def _group_results(scores: Sequence[Any], rankings: Sequence[str], eps: float) -> list[tuple[int, bool]]:
    if len(scores) == 0:
        raise ValueError("strict_group_accuracy: no groups")
    if len(scores) != len(rankings):
        raise ValueError(f"strict_group_accuracy: {len(scores)} score groups but {len(rankings)} rankings")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    out = []
    for g, (group_scores, ranking) in enumerate(zip(scores, rankings)):
        s = _as_1d(group_scores, f"scores[{g}]")
        try:
            levels = parse_ranking(ranking, num_candidates=s.size)
        except ValueError as err:
            raise ValueError(f"group {g}: {err}") from None
        out.append((s.size, _group_correct(s, levels, eps)))
    return out


def strict_group_accuracy(scores: Sequence[Any], rankings: Sequence[str], eps: float = 0.0) -> float:
    """Fraction of K-way groups whose every pairwise relation the scores get right.

    ``scores[g]`` holds the K candidates' scores (A first), ``rankings[g]`` the human ranking. Human
    i > j is right iff s_i - s_j > eps; a human tie is right iff |s_i - s_j| <= eps.
    """
    results = _group_results(scores, rankings, eps)
    return sum(ok for _, ok in results) / len(results)


def strict_group_accuracy_by_k(scores: Sequence[Any], rankings: Sequence[str], eps: float = 0.0) -> dict[int, float]:
    """``strict_group_accuracy`` separately for each group size K: {K: accuracy}, K ascending."""
    by_k: dict[int, list[bool]] = {}
    for k, ok in _group_results(scores, rankings, eps):
        by_k.setdefault(k, []).append(ok)
    return {k: sum(v) / len(v) for k, v in sorted(by_k.items())}


def spearman_fisher_mean(groups: Sequence[tuple[Any, Any]]) -> float:
    """Spearman correlation per group (e.g. per editing model), averaged through Fisher z.

    ``tanh(mean(arctanh(clip(r, -0.999999, 0.999999))))``. Groups whose r is undefined (a constant
    input) are skipped; if every group is undefined, ValueError.
    """
    from scipy.stats import spearmanr

    if len(groups) == 0:
        raise ValueError("spearman_fisher_mean: no groups")
    zs = []
    for g, group in enumerate(groups):
        if len(group) != 2:
            raise ValueError(f"groups[{g}]: expected a (pred, human) pair")
        pred, human = _as_1d(group[0], f"groups[{g}] pred"), _as_1d(group[1], f"groups[{g}] human")
        if pred.size != human.size:
            raise ValueError(f"groups[{g}]: {pred.size} predictions but {human.size} human scores")
        if pred.size < 2 or np.ptp(pred) == 0 or np.ptp(human) == 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = float(spearmanr(pred, human).statistic)
        if math.isnan(r):
            continue
        zs.append(math.atanh(min(max(r, -FISHER_CLIP), FISHER_CLIP)))
    if not zs:
        raise ValueError("spearman_fisher_mean: Spearman is undefined in every group (constant inputs)")
    return math.tanh(sum(zs) / len(zs))


@dataclass(frozen=True)
class PositionBias:
    """A pairwise judge's accuracy with the pair as given and with it swapped."""

    accuracy_given: float     # right when shown (first, second)
    accuracy_swapped: float   # right when shown (second, first)
    bias: float               # accuracy_given - accuracy_swapped (0 = order does not matter)
    consistency: float        # fraction of pairs whose verdict flips exactly when the order flips

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def position_bias(judge: Callable[[Any, Any], float], pairs: Sequence[tuple[Any, Any, float]]) -> PositionBias:
    """Measure how a pairwise judge depends on presentation order.

    ``judge(a, b)`` returns a number > 0 when it prefers a, < 0 when it prefers b (e.g. a score
    difference); ``pairs`` holds ``(a, b, human_label)`` with label > 0 for a, < 0 for b. Human ties
    are not allowed (ValueError). A verdict of exactly 0 counts as wrong.
    """
    if len(pairs) == 0:
        raise ValueError("position_bias: no pairs")
    given, swapped, consistent = 0, 0, 0
    for i, pair in enumerate(pairs):
        if len(pair) != 3:
            raise ValueError(f"pairs[{i}]: expected (a, b, human_label)")
        a, b, label = pair
        label = float(np.sign(float(label)))
        if label == 0:
            raise ValueError(f"pairs[{i}]: human tie; position bias needs a preferred item")
        forward, backward = float(np.sign(float(judge(a, b)))), float(np.sign(float(judge(b, a))))
        given += forward == label
        swapped += backward == -label
        consistent += forward != 0 and forward == -backward
    n = len(pairs)
    return PositionBias(given / n, swapped / n, (given - swapped) / n, consistent / n)


__all__ = ["pairwise_accuracy_with_ties", "pairwise_accuracy", "parse_ranking", "strict_group_accuracy",
           "strict_group_accuracy_by_k", "spearman_fisher_mean", "PositionBias", "position_bias"]
