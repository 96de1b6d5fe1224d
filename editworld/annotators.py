"""Simulated annotators: noisy 1-4 ratings of the true scores, with per-annotator bias.

Each annotator reports the true score, off by one with probability ``flip`` (the direction tilted by
the annotator's own leniency), clipped to 1-4. Training data gets one annotator per candidate; the
benchmark split three, as in the paper (section 2, appendix A.3).
"""

from __future__ import annotations

import numpy as np

from editworld import DIMENSIONS


def annotate(true_scores: dict[str, int], n_annotators: int, rng: np.random.Generator, flip: float = 0.25) -> dict[str, list[int]]:
    """Ratings per dimension, one per annotator."""
    out: dict[str, list[int]] = {}
    leniency = rng.uniform(-0.5, 0.5, n_annotators)
    for dim in DIMENSIONS:
        ratings = []
        for a in range(n_annotators):
            s = true_scores[dim]
            if rng.random() < flip:
                s += 1 if rng.random() < 0.5 + leniency[a] / 2 else -1
            ratings.append(int(np.clip(s, 1, 4)))
        out[dim] = ratings
    return out
