"""Held-out editworld evaluation of an editor: mean oracle scores beside a no-op and the ground truth, and a grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch


@torch.no_grad()
def edit_tasks(editor: Any, tasks: list, num_steps: int = 10, batch_size: int = 32, seed: int = 0,
               size: int = 32) -> list:
    """Deterministic (ODE, fixed initial noise) edits of editworld tasks."""
    g = torch.Generator().manual_seed(seed)
    images: list = []
    for start in range(0, len(tasks), batch_size):
        chunk = tasks[start:start + batch_size]
        cond = editor.prepare([t.source_image(size) for t in chunk], [t.instruction for t in chunk])
        images.extend(editor.sample(cond, num_steps=num_steps, noise_level=0.0, generator=g).images)
    return images


def mean_oracle(tasks: list, images: list) -> dict[str, float]:
    """Mean oracle score per dimension."""
    from editworld import DIMENSIONS
    from editworld.oracle import oracle_scores

    scores = [oracle_scores(t, im) for t, im in zip(tasks, images)]
    return {d: float(np.mean([s[d] for s in scores])) for d in DIMENSIONS}


def evaluate_editor(editor: Any, num_tasks: int = 64, num_steps: int = 10, batch_size: int = 32, seed: int = 0,
                    size: int = 32) -> tuple[dict[str, dict[str, float]], list, list]:
    """``({"editor"|"no-op"|"target": {dim: mean}}, tasks, edits)`` on held-out tasks (``HELD_OUT_SEED``)."""
    from editworld.tasks import HELD_OUT_SEED, sample_tasks

    tasks = sample_tasks(num_tasks, HELD_OUT_SEED, size=size)
    edits = edit_tasks(editor, tasks, num_steps, batch_size, seed, size)
    rows = {"editor": mean_oracle(tasks, edits),
            "no-op": mean_oracle(tasks, [t.source_image(size) for t in tasks]),
            "target": mean_oracle(tasks, [t.target_image(size) for t in tasks])}
    return rows, tasks, edits


def save_grid(tasks: list, edits: list, path: str | Path, size: int = 32, scale: int = 3, text_width: int = 260) -> Path:
    """Rows of source | instruction | edit | target, upscaled ``scale`` times (nearest)."""
    from PIL import Image, ImageDraw

    tile = size * scale
    pad = 4
    width = 3 * tile + text_width + 5 * pad
    grid = Image.new("RGB", (width, len(tasks) * (tile + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for i, (task, edit) in enumerate(zip(tasks, edits)):
        y = pad + i * (tile + pad)
        x = pad
        grid.paste(task.source_image(size).resize((tile, tile), Image.NEAREST), (x, y))
        x += tile + pad
        draw.text((x, y + tile // 2 - 6), task.instruction, fill="black")
        x += text_width + pad
        grid.paste(edit.convert("RGB").resize((tile, tile), Image.NEAREST), (x, y))
        x += tile + pad
        grid.paste(task.target_image(size).resize((tile, tile), Image.NEAREST), (x, y))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path


def reevaluate_runs(runs: list[str | Path], num_tasks: int, seed: int = 0, num_steps: int | None = None,
                    batch_size: int = 64) -> dict[str, dict[str, Any]]:
    """Each RL run's final policy and the editor it started from (its adapter disabled), on the same ``num_tasks``
    held-out tasks with the same initial noise: ``{run: {"before": {dim: mean}, "after": {dim: mean}}}``.

    A larger held-out set than a run's own evaluations, paired per task, so a gain measured over seeds reflects
    training randomness rather than which few tasks were evaluated. ``num_steps``: ODE steps (None: the run's
    ``eval.num_steps``). The starting editor's edits are computed once per distinct editor spec.
    """
    from editworld.tasks import HELD_OUT_SEED, sample_tasks
    from policy.online import latest_checkpoint, load_run_config, load_trained_policy

    out: dict[str, dict[str, Any]] = {}
    before_cache: dict[tuple, dict[str, float]] = {}
    for run in runs:
        run = Path(run)
        editor = load_trained_policy(run)
        cfg = load_run_config(run)
        steps = num_steps or cfg.eval.num_steps
        size = cfg.data.image_size
        tasks = sample_tasks(num_tasks, HELD_OUT_SEED, size=size)
        key = (cfg.editor.spec, cfg.editor.lora_rank, cfg.editor.lora_alpha, steps, size)
        if key not in before_cache:
            with editor.reference():
                before_cache[key] = mean_oracle(tasks, edit_tasks(editor, tasks, steps, batch_size, seed, size))
        after = mean_oracle(tasks, edit_tasks(editor, tasks, steps, batch_size, seed, size))
        ckpt = latest_checkpoint(run)
        out[str(run)] = {"before": before_cache[key], "after": after, "checkpoint": str(ckpt), "tasks": num_tasks,
                         "ode_steps": steps, "seed": seed}
    return out
