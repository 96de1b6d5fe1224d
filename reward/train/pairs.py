"""Turning human comparisons into ranking-loss samples, including tie disentanglement (paper eq. 6).

A comparison is two candidates with per-dimension human scores (dimension 1 = instruction following,
dimension 2 = visual quality). Its overall outcome is decided by the summed scores:

* not tied -> one sample ``(winner, loser)``;
* tied overall, but one candidate wins dimension 1 and the other wins dimension 2
  (``z_A1 > z_B1`` and ``z_B2 > z_A2``, or the mirror) -> **two** samples with opposite labels,
  ``(A, B)`` and ``(B, A)`` (eq. 6): the model must learn that each is better along one axis;
* any other tie carries no ranking signal and is dropped.

This is a pure function of the scores; ``reward.train.data.training_samples`` applies the same rule to
``PreferencePair`` objects read from disk.
"""

from __future__ import annotations

from typing import Iterable, Sequence, TypeVar

T = TypeVar("T")


def overall_tie(scores_a: Sequence[float], scores_b: Sequence[float], tol: float = 1e-9) -> bool:
    """Whether two candidates tie on the summed (overall) human score."""
    _check(scores_a, scores_b)
    return abs(sum(scores_a) - sum(scores_b)) <= tol


def is_disentanglable(scores_a: Sequence[float], scores_b: Sequence[float], tol: float = 1e-9) -> bool:
    """An overall tie whose first two dimensions disagree: each candidate wins one of them (eq. 6)."""
    if not overall_tie(scores_a, scores_b, tol) or len(scores_a) < 2:
        return False
    d1, d2 = scores_a[0] - scores_b[0], scores_a[1] - scores_b[1]
    return (d1 > tol and d2 < -tol) or (d1 < -tol and d2 > tol)


def disentangle_ties(pairs: Iterable[tuple[T, T, Sequence[float], Sequence[float]]],
                     tol: float = 1e-9) -> list[tuple[T, T]]:
    """Training samples ``(winner, loser)`` from comparisons ``(a, b, scores_a, scores_b)``.

    Non-tied pairs give one sample, winner first; disentanglable ties give ``(a, b)`` and ``(b, a)``;
    other ties are dropped. ``a`` and ``b`` can be anything (paths, ids, images); they are passed through.
    """
    out: list[tuple[T, T]] = []
    for i, pair in enumerate(pairs):
        if len(pair) != 4:
            raise ValueError(f"pair {i}: expected (a, b, scores_a, scores_b), got {len(pair)} items")
        a, b, sa, sb = pair
        try:
            _check(sa, sb)
        except ValueError as err:
            raise ValueError(f"pair {i}: {err}") from None
        if not overall_tie(sa, sb, tol):
            out.append((a, b) if sum(sa) > sum(sb) else (b, a))
        elif is_disentanglable(sa, sb, tol):
            out.extend([(a, b), (b, a)])
    return out


def _check(scores_a: Sequence[float], scores_b: Sequence[float]) -> None:
    if len(scores_a) != len(scores_b) or len(scores_a) == 0:
        raise ValueError(f"score vectors must be non-empty and equal-length, got {len(scores_a)} and {len(scores_b)}")


__all__ = ["overall_tie", "is_disentanglable", "disentangle_ties"]
