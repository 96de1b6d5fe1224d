"""The one held-out evaluation of an editor: deterministic (ODE) edits of editworld tasks it never trains on, scored
by the oracle. RL's periodic evaluation, ``editrl policy eval``, SFT, the curation Table 3 and the re-evaluation
of RL runs all call ``edit_tasks`` + ``oracle_scores_of`` (or ``evaluate_editor``), so their figures are comparable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from editrl.dimensions import DIMENSIONS


def held_out_tasks(num_tasks: int, size: int = 32, seed: int | None = None) -> list:
    """Editworld tasks from the held-out seed (``editworld.tasks.HELD_OUT_SEED`` unless ``seed``)."""
    from editworld.tasks import HELD_OUT_SEED, sample_tasks

    return sample_tasks(int(num_tasks), HELD_OUT_SEED if seed is None else int(seed), size=size)


@torch.no_grad()
def edit_tasks(editor: Any, tasks: list, num_steps: int = 10, batch_size: int = 32,
               generator: torch.Generator | int = 0, size: int = 32, guidance: float | None = None,
               sources: list | None = None) -> list:
    """ODE edits (noise level 0) of ``tasks``; ``generator`` (or a seed) draws the initial noise, batch by batch."""
    g = torch.Generator().manual_seed(generator) if isinstance(generator, int) else generator
    sources = sources if sources is not None else [t.source_image(size) for t in tasks]
    images: list = []
    for start in range(0, len(tasks), batch_size):
        chunk = tasks[start:start + batch_size]
        cond = editor.prepare(sources[start:start + batch_size], [t.instruction for t in chunk])
        images.extend(editor.sample(cond, num_steps=num_steps, noise_level=0.0, guidance=guidance,
                                    generator=g).images)
    return images


def oracle_scores_of(tasks: list, images: list) -> dict[str, list[float]]:
    """Per-task oracle scores ``{dimension: [score per task]}``."""
    from editworld.oracle import oracle_scores

    scores = [oracle_scores(t, im) for t, im in zip(tasks, images)]
    return {d: [float(s[d]) for s in scores] for d in DIMENSIONS}


def mean_scores(scores: dict[str, list[float]]) -> dict[str, float]:
    """Mean per dimension of ``oracle_scores_of``'s output."""
    return {d: float(np.mean(v)) for d, v in scores.items()}


def evaluate_editor(editor: Any, num_tasks: int = 64, num_steps: int = 10, batch_size: int = 32, seed: int = 0,
                    size: int = 32) -> tuple[dict[str, dict[str, float]], list, list]:
    """``({"editor"|"no-op"|"target": {dim: mean}}, tasks, edits)`` on held-out tasks, beside the no-op and the truth."""
    tasks = held_out_tasks(num_tasks, size)
    edits = edit_tasks(editor, tasks, num_steps, batch_size, seed, size)
    rows = {"editor": mean_scores(oracle_scores_of(tasks, edits)),
            "no-op": mean_scores(oracle_scores_of(tasks, [t.source_image(size) for t in tasks])),
            "target": mean_scores(oracle_scores_of(tasks, [t.target_image(size) for t in tasks]))}
    return rows, tasks, edits


__all__ = ["held_out_tasks", "edit_tasks", "oracle_scores_of", "mean_scores", "evaluate_editor"]
