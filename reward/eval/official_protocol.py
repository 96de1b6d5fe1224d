"""The official EditReward evaluation protocol (``evaluate/eval_bench.py`` of TIGER-AI-Lab/EditReward), function by
function, so that editrl's scores give the numbers the official script prints. editrl's own metrics, which fix
the quirks below, are in ``reward.eval.metrics``; ``reward eval`` reports both, each table named.

What the official protocol does, and editrl's corrected metric does not:

* Scores are the ``.item()`` of a float32 reward: ``official_score`` rounds to float32 before any difference.
* GenAI-Bench / AURORA pairs: the "paper metric" (``accuracy_with_ties_paper``) sweeps the tie threshold upwards
  through the sorted |diff| and never tries "no model ties": on h = [1,-1,1,-1,1], m = [.5,-.2,.1,.3,2] it gives 0.6
  where the threshold search (``accuracy_with_ties_search``, and editrl) gives 0.8.
* EditReward-Bench (``editreward_bench``): the tie threshold is calibrated on the 2-candidate groups only; groups of 3
  and 4 report accuracy without ties (human ties dropped); the overall pairwise accuracy re-calibrates over all pooled
  pairs. Labels are read by ``pairwise_gt``: ``"A=B"`` counts as A>B; only ``"A=B=Good"`` / ``"A=B=Bad"`` are ties;
  a ranking with "=" (other than those two) can never be strictly right. Strict ranking compares
  ``argsort(scores)[::-1]`` with the human order, so two exactly equal scores count right for "B>A", wrong for "A>B".
* ImagenHub's "Fisher-z average" is tanh(mean r), no arctanh (``imagenhub_v1``); AURORA point-wise averages the
  per-model Spearman plainly (``aurora_pointwise``). Undefined correlations (NaN) propagate as they do there.

Tested against the official functions' outputs on fixtures (tests/reward/test_official_protocol.py).
"""

from __future__ import annotations

import math
import warnings
from itertools import combinations
from typing import Any, Sequence

import numpy as np

TIE_LABELS = ("A=B=Good", "A=B=Bad")


def official_score(value: Any) -> float:
    """A score as the official code holds it: a float32 model output turned into a Python float."""
    return float(np.float32(value))


def _h_m(h: Sequence[Any], m: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    h_arr, m_arr = np.asarray(h, dtype=np.float64).reshape(-1), np.asarray(m, dtype=np.float64).reshape(-1)
    if h_arr.shape != m_arr.shape:
        raise ValueError(f"{h_arr.size} human labels but {m_arr.size} model differences")
    return h_arr, m_arr


def suff_stats(h: Sequence[Any], m: Sequence[Any], eps: float) -> tuple[int, int, int, int, int]:
    """(C, D, T_h, T_m, T_hm) at tie threshold ``eps`` (model tie = |m| <= eps; eps = -1: no model ties).

    A human tie counts T_hm or T_h; otherwise a model tie counts T_m, h*m > 0 counts C, anything else D (so a
    difference of exactly 0 is discordant when eps < 0).
    """
    h_arr, m_arr = _h_m(h, m)
    model_tie = np.abs(m_arr) <= eps
    human_tie = h_arr == 0
    decided = ~human_tie & ~model_tie
    c = int((decided & (h_arr * m_arr > 0)).sum())
    return (c, int(decided.sum()) - c, int((human_tie & ~model_tie).sum()), int((~human_tie & model_tie).sum()),
            int((human_tie & model_tie).sum()))


def accuracy_with_ties_paper(h: Sequence[Any], m: Sequence[Any]) -> float:
    """The official ``calc_accuracy_with_ties`` ("paper metric" of the GenAI-Bench / AURORA pairwise runs).

    Pairs are visited in order of |m| (stable); after each one, it and every pair before it count as model ties
    and the accuracy (C + T_hm) / n is taken; the best of these n values is returned. The state with no model
    ties is never scored. Empty input is a ValueError (the official returns -inf).
    """
    h_arr, m_arr = _h_m(h, m)
    if h_arr.size == 0:
        raise ValueError("accuracy_with_ties_paper: no pairs")
    order = sorted(range(h_arr.size), key=lambda i: abs(m_arr[i]))  # Python's stable sort, as the official
    human_tie = h_arr[order] == 0
    concordant = ~human_tie & (h_arr[order] * m_arr[order] > 0)
    # after k pairs: concordant among the untied rest + human ties among the first k
    correct = int(concordant.sum()) - np.cumsum(concordant) + np.cumsum(human_tie)
    best = int(correct.max())
    return best / h_arr.size


def accuracy_with_ties_search(h: Sequence[Any], m: Sequence[Any]) -> tuple[float, float]:
    """The official ``calc_accuracy_with_ties_for_edit_reward_bench``: (best accuracy, its eps).

    Tries eps = 0.0 and every distinct |m| in ascending order, keeps the first strict maximum of
    (C + T_hm) / n. Empty input gives (0.0, 0.0), as there.
    """
    h_arr, m_arr = _h_m(h, m)
    if h_arr.size == 0:
        return 0.0, 0.0
    mag = np.abs(m_arr)
    thresholds = np.concatenate([[0.0], np.unique(mag)])
    human_tie = h_arr == 0
    concordant = ~human_tie & (h_arr * m_arr > 0)
    conc_mag, tie_mag = np.sort(mag[concordant]), np.sort(mag[human_tie])
    # C(eps) = concordant pairs with |m| > eps; T_hm(eps) = human ties with |m| <= eps
    correct = (conc_mag.size - np.searchsorted(conc_mag, thresholds, side="right")
               + np.searchsorted(tie_mag, thresholds, side="right"))
    best = int(np.argmax(correct))  # the first maximum = the smallest eps
    return int(correct[best]) / h_arr.size, float(thresholds[best])


def accuracy_without_ties(h: Sequence[Any], m: Sequence[Any]) -> float:
    """The official ``calc_accuracy_without_ties``: C / (C + D + T_m) at eps = -1, i.e. C / (C + D) over the pairs
    humans did not tie. Every pair a human tie: ZeroDivisionError, as there."""
    c, d, _, t_m, _ = suff_stats(h, m, -1)
    if c + d + t_m == 0:
        raise ZeroDivisionError("accuracy_without_ties: every pair is a human tie")
    return c / (c + d + t_m)


# ---- EditReward-Bench labels ----------------------------------------------------------------------

def pairwise_gt(ranking: str | None, i: int, j: int) -> int:
    """The official ``get_pairwise_gt``: +1 if candidate i is above j, -1 below, 0 tie / unknown.

    ``"A>B"`` -> +1 and ``"B>A"`` / ``"A<B"`` -> -1 for every pair; ``"A=B=Good"`` / ``"A=B=Bad"`` -> 0; otherwise
    the letter found first in the string wins (so ``"A=B"`` -> +1), a letter not in it gives 0. ``None`` (no
    ranking key) -> 0.
    """
    if ranking is None:
        return 0
    if ranking == "A>B":
        return 1
    if ranking in ("B>A", "A<B"):
        return -1
    if ranking in TIE_LABELS:
        return 0
    pos_i, pos_j = ranking.find(chr(ord("A") + i)), ranking.find(chr(ord("A") + j))
    if pos_i == -1 or pos_j == -1:
        return 0
    return 1 if pos_i < pos_j else -1


def gt_ranking(ranking: str | None, num_candidates: int) -> tuple[int, ...] | str | None:
    """The official ``get_gt_ranking``: ``"tie"`` for the two tie labels, the candidate indices best first, or None
    (a ranking containing "=", a wrong letter count, or no ranking: such an item is never strictly right)."""
    if ranking is None:
        return None
    if ranking in TIE_LABELS:
        return "tie"
    if ranking == "A>B":
        return (0, 1)
    if ranking in ("B>A", "A<B"):
        return (1, 0)
    if "=" in ranking:
        return None
    letters = ranking.replace(">", "").replace("<", "")
    if len(letters) != num_candidates:
        return None
    return tuple(ord(ch) - ord("A") for ch in letters)


def editreward_bench(groups: Sequence[tuple[str | None, Sequence[float]]]) -> dict[str, Any]:
    """The official ``evaluate_edit_reward_bench`` on scored groups: ``groups[g] = (ranking, candidate scores)``.

    Groups are split by size K into the official files ``"2-Pair"``, ``"3-Pair"``, ``"4-Pair"`` (ascending K, each
    in the given order). Returns ``{"results": <the official summary JSON>, "items": [...], "optimal_epsilon": eps}``
    where ``items[g]`` holds ``file_name``, ``sample_index``, ``strict_accuracy_correct`` and ``predicted_rank``
    (1 = best) per candidate, in input order. Where every non-2 pair is a human tie the official run stops
    with ZeroDivisionError; here that file's ``pairwise_accuracy`` is None and ``pairwise_error`` says why.
    """
    if len(groups) == 0:
        raise ValueError("editreward_bench: no groups")
    by_k: dict[int, list[int]] = {}
    for g, (_, scores) in enumerate(groups):
        by_k.setdefault(len(scores), []).append(g)
    results: dict[str, Any] = {}
    items: list[dict[str, Any] | None] = [None] * len(groups)
    all_h: list[int] = []
    all_m: list[float] = []
    strict_correct = strict_total = 0
    eps_2 = None
    for k in sorted(by_k):
        name = f"{k}-Pair"
        h: list[int] = []
        m: list[float] = []
        for g in by_k[k]:
            ranking, scores = groups[g][0], [official_score(s) for s in groups[g][1]]
            for i, j in combinations(range(k), 2):
                h.append(pairwise_gt(ranking, i, j))
                m.append(scores[i] - scores[j])
        entry: dict[str, Any] = {}
        eps = 0.0
        if k == 2:
            entry["pairwise_accuracy"], eps = accuracy_with_ties_search(h, m)
            eps_2 = eps
        else:
            try:
                entry["pairwise_accuracy"] = accuracy_without_ties(h, m)
            except ZeroDivisionError as err:
                entry["pairwise_accuracy"], entry["pairwise_error"] = None, f"{err} (the official run stops here)"
        correct = 0
        for idx, g in enumerate(by_k[k]):
            ranking, scores = groups[g][0], [official_score(s) for s in groups[g][1]]
            gt = gt_ranking(ranking, k)
            order = np.argsort(scores)[::-1]
            if gt == "tie":
                ok = abs(scores[0] - scores[1]) <= eps
            else:
                ok = gt is not None and gt == tuple(int(x) for x in order)
            correct += ok
            ranks = np.empty_like(order)
            ranks[order] = np.arange(k)
            items[g] = {"file_name": name, "sample_index": idx, "strict_accuracy_correct": bool(ok),
                        "scores": scores, "predicted_rank": [int(r) + 1 for r in ranks]}
        entry.update({"strict_ranking_accuracy": correct / len(by_k[k]), "strict_correct_count": correct,
                      "strict_total_samples": len(by_k[k]), "pair_count": len(h)})
        results[name] = entry
        all_h += h
        all_m += m
        strict_correct += correct
        strict_total += len(by_k[k])
    results["overall"] = {"pairwise_accuracy": accuracy_with_ties_search(all_h, all_m)[0],
                          "strict_ranking_accuracy": strict_correct / strict_total,
                          "strict_correct_count": strict_correct, "strict_total_samples": strict_total,
                          "total_pair_count": len(all_h)}
    return {"results": results, "items": items, "optimal_epsilon": eps_2}


# ---- point-wise: Spearman per editing model / per prompt ------------------------------------------

def _spearman(pred: Sequence[float], gt: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    with warnings.catch_warnings():  # a constant input gives NaN, as in the official run
        warnings.simplefilter("ignore")
        return float(spearmanr(pred, gt)[0])


def _by_key(keys: Sequence[str], pred: Sequence[float], gt: Sequence[float]) -> dict[str, tuple[list[float], list[float]]]:
    if not (len(keys) == len(pred) == len(gt)):
        raise ValueError(f"{len(keys)} keys, {len(pred)} predictions and {len(gt)} human scores")
    if not keys:
        raise ValueError("no items")
    groups: dict[str, tuple[list[float], list[float]]] = {}
    for key, p, g in zip(keys, pred, gt):
        entry = groups.setdefault(key, ([], []))
        entry[0].append(official_score(p))
        entry[1].append(float(g))
    return groups


def imagenhub_v1(models: Sequence[str], pred: Sequence[float], gt: Sequence[float]) -> dict[str, float]:
    """The official ``evaluate_imagenhub_from_json``: Spearman per editing model (first-seen order) and
    ``average`` = tanh(mean r), written as (e^2z - 1)/(e^2z + 1) with z the plain mean of r (no arctanh)."""
    out = {model: _spearman(p, g) for model, (p, g) in _by_key(models, pred, gt).items()}
    z = sum(out.values()) / len(out)
    out["average"] = (math.exp(2 * z) - 1) / (math.exp(2 * z) + 1)
    return out


def aurora_pointwise(models: Sequence[str], pred: Sequence[float], gt: Sequence[float]) -> dict[str, float]:
    """The official ``evaluate_aurora_from_json_pointwise``: Spearman per editing model and their plain mean."""
    out = {model: _spearman(p, g) for model, (p, g) in _by_key(models, pred, gt).items()}
    out["average"] = sum(out.values()) / len(out)
    return out


def imagenhub_v2(prompts: Sequence[str], pred: Sequence[float], gt: Sequence[float]) -> dict[str, Any]:
    """The official ``evaluate_imagenhub_from_json_v2``, grouped by prompt (prompts with < 2 items are dropped):
    ``avg_per_prompt_spearman`` (mean of the defined per-prompt r, 0.0 if none) and ``overall_zscore_spearman``
    (Spearman over all items after z-scoring predictions within each prompt; std <= 1e-6 -> 0; NaN -> 0.0)."""
    groups = _by_key(prompts, pred, gt)
    per_prompt: list[float] = []
    all_gt: list[float] = []
    all_z: list[float] = []
    for p, g in groups.values():
        if len(p) < 2:
            continue
        r = _spearman(p, g)
        if not np.isnan(r):
            per_prompt.append(r)
        mean, std = np.mean(p), np.std(p)
        all_z.extend(((np.asarray(p) - mean) / std).tolist() if std > 1e-6 else [0.0] * len(p))
        all_gt.extend(g)
    overall = _spearman(all_z, all_gt) if len(all_z) >= 2 else float("nan")
    return {"avg_per_prompt_spearman": float(np.mean(per_prompt)) if per_prompt else 0.0,
            "overall_zscore_spearman": 0.0 if np.isnan(overall) else overall,
            "evaluated_prompt_count": len(per_prompt), "total_prompt_count": len(groups)}


def pair_bench(h: Sequence[Any], m: Sequence[Any]) -> dict[str, Any]:
    """What the official ``main()`` reports on a GenAI-Bench / AURORA pairwise file, plus the threshold search:
    ``accuracy_with_ties_paper``, ``accuracy_without_ties`` (None when every pair is a human tie) and
    ``accuracy_with_ties_search`` with its ``eps``."""
    out: dict[str, Any] = {"accuracy_with_ties_paper": accuracy_with_ties_paper(h, m)}
    try:
        out["accuracy_without_ties"] = accuracy_without_ties(h, m)
    except ZeroDivisionError as err:
        out["accuracy_without_ties"], out["accuracy_without_ties_error"] = None, str(err)
    out["accuracy_with_ties_search"], out["eps"] = accuracy_with_ties_search(h, m)
    return out


__all__ = ["official_score", "suff_stats", "accuracy_with_ties_paper", "accuracy_with_ties_search",
           "accuracy_without_ties", "pairwise_gt", "gt_ranking", "editreward_bench", "imagenhub_v1", "imagenhub_v2",
           "aurora_pointwise", "pair_bench"]
