"""Selection rules over score rows, as pure functions.

A score row is ``{"id", "line", "reward": {"mu": {dim: m}, "sigma": {dim: s}, "score", "score_sigma"}}``.
Rules combine in one fixed order: the per-dimension minimums and the threshold filter rows; then a top-K
(or top fraction of all scored rows) keeps the best of what passed, best meaning the highest ranking key
``score - k * score_sigma`` (ties: the earlier manifest line wins). The count limit needs the whole score
file, so selection is two streaming passes: ``find_cut`` keeps a heap of K keys, ``is_kept`` then decides
row by row — memory O(K) floats, never the rows.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from curation.config import SelectionConfig
from editrl.config import ConfigError


def ranking_key(row: dict[str, Any], uncertainty_k: float = 0.0) -> float:
    """The value rows are ranked by: the aggregate mean minus k aggregate standard deviations."""
    reward = row["reward"]
    return float(reward["score"]) - uncertainty_k * float(reward["score_sigma"])


def passes_filters(row: dict[str, Any], rule: SelectionConfig) -> bool:
    """Whether a row clears every per-dimension minimum of mu and the ranking-key threshold."""
    mu = row["reward"]["mu"]
    for dim, minimum in rule.min_dims.items():
        if dim not in mu:
            raise ConfigError(f"selection.min_dims: unknown dimension {dim!r}; the reward model has {sorted(mu)}")
        if mu[dim] < minimum:
            return False
    return rule.threshold is None or ranking_key(row, rule.uncertainty_k) >= rule.threshold


def keep_count(rule: SelectionConfig, n_scored: int) -> int | None:
    """How many rows the count limit allows (None: no count limit); a fraction rounds half up."""
    if rule.top_k is not None:
        return rule.top_k
    if rule.top_fraction is not None:
        return int(rule.top_fraction * n_scored + 0.5)
    return None


@dataclass(frozen=True)
class Cut:
    """The worst (key, line) still kept by the count limit; ``None`` key: keep nothing."""

    key: float | None
    line: int


def _order(row: dict[str, Any], k: float) -> tuple[float, int]:
    return ranking_key(row, k), -int(row["line"])  # larger is better; an earlier line wins ties


def find_cut(rows: Iterable[dict[str, Any]], rule: SelectionConfig, limit: int | None) -> Cut | None:
    """First pass: the cut that keeps the ``limit`` best rows passing the filters (see ``keep_count``).

    Returns None when there is no limit or it keeps every passing row; memory is a heap of ``limit`` keys."""
    heap: list[tuple[float, int]] = []
    passing = 0
    for row in rows:
        if not passes_filters(row, rule):
            continue
        passing += 1
        if not limit:
            continue
        item = _order(row, rule.uncertainty_k)
        if len(heap) < limit:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
    if limit is None or passing <= limit:
        return None
    if limit == 0:
        return Cut(None, 0)
    key, neg_line = heap[0]
    return Cut(key, -neg_line)


def is_kept(row: dict[str, Any], rule: SelectionConfig, cut: Cut | None) -> bool:
    """Second pass: whether a row is kept, given the cut from ``find_cut``."""
    if not passes_filters(row, rule):
        return False
    if cut is None:
        return True
    if cut.key is None:
        return False
    return _order(row, rule.uncertainty_k) >= (cut.key, -cut.line)


def select_rows(rows: list[dict[str, Any]], rule: SelectionConfig) -> list[dict[str, Any]]:
    """The kept rows of an in-memory list, in their original order."""
    cut = find_cut(rows, rule, keep_count(rule, len(rows)))
    return [r for r in rows if is_kept(r, rule, cut)]


def select_stream(open_rows: Callable[[], Iterator[dict[str, Any]]], rule: SelectionConfig) -> tuple[Cut | None, int]:
    """The cut for rows re-readable from ``open_rows()``, and the number of rows (a streaming first pass)."""
    n = sum(1 for _ in open_rows())
    return find_cut(open_rows(), rule, keep_count(rule, n)), n
