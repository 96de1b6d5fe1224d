"""Confidence intervals over seeds: one Student-t interval that every study (RL margins, reward ablations) reports."""

from __future__ import annotations

import math
from collections.abc import Sequence


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float | None]:
    """(mean, half-width of the two-sided Student-t interval at ``confidence``); the half-width is None below two
    values, where no interval exists."""
    from scipy.stats import t

    x = [float(v) for v in values]
    if not x:
        raise ValueError("t_interval: no values")
    mean = sum(x) / len(x)
    if len(x) < 2:
        return mean, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in x) / (len(x) - 1))
    return mean, float(t.ppf(0.5 + confidence / 2, len(x) - 1) * sd / math.sqrt(len(x)))


def t_bounds(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the Student-t interval at ``confidence``; NaN bounds below two values."""
    mean, half = t_interval(values, confidence)
    return (mean, math.nan, math.nan) if half is None else (mean, mean - half, mean + half)


__all__ = ["t_bounds", "t_interval"]
