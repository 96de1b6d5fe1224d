"""Held-out evaluation of editors: an RL run's in-run evaluation, an image grid, and the paired re-evaluation of RL
runs' final policies (the edits and oracle scores themselves come from ``rollout.held_out``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from policy.config import EvalSection
from policy.guard import GUARD_KEY, guard_score
from policy.rollouts import Prompt, step_generator
from rollout.adapters import editor_device


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


def evaluate_held_out(editor: Any, prompts: list[Prompt], ev: EvalSection, guidance: float | None, seed: int,
                      client: Any = None, grid_path: Path | None = None, guard_client: Any = None
                      ) -> dict[str, float]:
    """ODE edits of held-out editworld tasks with fixed noise; mean oracle scores (and the learned reward's and the
    guard reward's, ``policy.guard``)."""
    from rollout.held_out import edit_tasks, mean_scores, oracle_scores_of

    g = step_generator(seed, 0, 99, editor_device(editor))
    tasks = [p.task for p in prompts]
    images = edit_tasks(editor, tasks, ev.num_steps, ev.batch_size, g, guidance=guidance,
                        sources=[p.source for p in prompts])
    out = {f"eval/oracle_{d}": v for d, v in mean_scores(oracle_scores_of(tasks, images)).items()}
    instructions = [p.instruction for p in prompts]
    metas = [{"source": p.source, "group": p.key} for p in prompts]
    if client is not None and ev.learned_reward:
        from policy.rewards import EditRewardFn

        r, info = EditRewardFn(client)(images, instructions, metas)
        out["eval/reward"] = float(np.nanmean(r.numpy()))
        for k, v in info.items():
            if k.startswith("mu_"):
                out[f"eval/reward_{k}"] = float(np.nanmean(v))
    if guard_client is not None:
        out[GUARD_KEY] = guard_score(guard_client, images, instructions, metas)
    if grid_path is not None:
        save_grid(tasks[:8], images[:8], grid_path, size=images[0].size[0])
    return out


def reevaluate_runs(runs: list[str | Path], num_tasks: int, seed: int = 0, num_steps: int | None = None,
                    batch_size: int = 64, checkpoint: str | None = None) -> dict[str, dict[str, Any]]:
    """Each RL run's final policy and the editor it started from (its adapter disabled), on the same ``num_tasks``
    held-out tasks with the same initial noise: ``{run: {"before": {dim: mean}, "after": {dim: mean}}}``.

    A larger held-out set than a run's own evaluations, paired per task, so a gain measured over seeds reflects
    training randomness rather than which few tasks were evaluated. ``num_steps``: ODE steps (None: the run's
    ``eval.num_steps``). The starting editor's edits are computed once per distinct editor spec. ``checkpoint``: a
    path inside each run folder to evaluate instead of its newest checkpoint (``guard-best``,
    ``checkpoints/step_000024``).
    """
    from editrl.io import DataError
    from policy.config import load_run_config
    from rollout.adapters import adapter_checkpoint
    from rollout.held_out import edit_tasks, held_out_tasks, mean_scores, oracle_scores_of
    from rollout.registry import load_editor

    out: dict[str, dict[str, Any]] = {}
    before_cache: dict[tuple, dict[str, float]] = {}
    for run in runs:
        run = Path(run)
        policy = run / checkpoint if checkpoint else run
        if not policy.exists():
            raise DataError(policy, f"missing: {run} has no {checkpoint!r} to evaluate")
        editor = load_editor(f"rl:{policy}")
        cfg = load_run_config(run)
        steps = num_steps or cfg.eval.num_steps
        size = cfg.data.image_size
        tasks = held_out_tasks(num_tasks, size)
        key = (cfg.editor.spec, cfg.editor.lora_rank, cfg.editor.lora_alpha, steps, size)
        if key not in before_cache:
            with editor.reference():
                before_cache[key] = mean_scores(oracle_scores_of(tasks, edit_tasks(editor, tasks, steps, batch_size, seed, size)))
        after = mean_scores(oracle_scores_of(tasks, edit_tasks(editor, tasks, steps, batch_size, seed, size)))
        ckpt = adapter_checkpoint(policy)
        out[str(run)] = {"before": before_cache[key], "after": after, "checkpoint": str(ckpt), "tasks": num_tasks,
                         "ode_steps": steps, "seed": seed}
    return out
