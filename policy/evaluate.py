"""Held-out evaluation reports for editors: an image grid, and the paired re-evaluation of RL runs' final policies
(the evaluation itself is ``rollout.held_out``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any



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
    from policy.loop import load_run_config
    from rollout.adapters import adapter_checkpoint
    from rollout.held_out import edit_tasks, held_out_tasks, mean_scores, oracle_scores_of
    from rollout.registry import load_editor

    out: dict[str, dict[str, Any]] = {}
    before_cache: dict[tuple, dict[str, float]] = {}
    for run in runs:
        run = Path(run)
        editor = load_editor(f"rl:{run}")
        cfg = load_run_config(run)
        steps = num_steps or cfg.eval.num_steps
        size = cfg.data.image_size
        tasks = held_out_tasks(num_tasks, size)
        key = (cfg.editor.spec, cfg.editor.lora_rank, cfg.editor.lora_alpha, steps, size)
        if key not in before_cache:
            with editor.reference():
                before_cache[key] = mean_scores(oracle_scores_of(tasks, edit_tasks(editor, tasks, steps, batch_size, seed, size)))
        after = mean_scores(oracle_scores_of(tasks, edit_tasks(editor, tasks, steps, batch_size, seed, size)))
        ckpt = adapter_checkpoint(run)
        out[str(run)] = {"before": before_cache[key], "after": after, "checkpoint": str(ckpt), "tasks": num_tasks,
                         "ode_steps": steps, "seed": seed}
    return out
