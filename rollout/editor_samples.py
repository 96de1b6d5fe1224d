"""Preference data from an editor's *own* samples: the editworld labels any image, so a reward model can be
trained on the distribution a policy will show it (on-policy data), not only on the simulated editors'.

For each training task (never the held-out seed) the editor samples a group of edits — ODE samples from
different initial noise and SDE samples at the listed noise levels (every step SDE, or with ``sde_window`` the RL
presets' window of SDE steps) — and the oracle scores every one. A
simulated annotator reports each oracle score with Gaussian noise (continuous ratings: the oracle's scores
are continuous, and rounding them to 1-4 would tie nearly every pair of one group). Pairs within a group whose
overall ratings differ by less than ``tie_margin`` are marked as ties (and disentangled or dropped by the
trainer, paper eq. 6). The folder has the editworld layout (``images/``, ``manifest.jsonl``, ``pairs.jsonl``),
so ``editrl reward train`` reads it through ``data.train`` or ``data.extra_train``. With ``split="bench"`` the
same data (no pairs) is an evaluation set for `editrl reward eval --data DIR`: how well a reward ranks this
editor's own samples.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from editworld import DIMENSIONS
from editworld.config import EditorSampleConfig
from editworld.dataset import pair_row


def generate_editor_samples(out: str | Path, editor: Any, cfg: EditorSampleConfig, editor_name: str = "editor",
                            progress: bool = True, more_editors: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sample, score and pair the editor's edits of ``cfg.tasks`` training tasks into ``out``; returns the summary.

    ``more_editors`` (name -> editor) sample the same tasks too and their edits join each task's group, so pairs
    also compare editors — e.g. a policy after RL against the one before it, which shows a reward model what the
    RL run learned to exploit. Every editor samples with the same seeds (the same initial noise for a task)."""
    from tqdm import tqdm

    from editrl.io import write_jsonl
    from editworld.oracle import oracle_scores
    from editworld.tasks import HELD_OUT_SEED, sample_tasks
    from rollout.best_of_n import sample_groups

    if cfg.seed == HELD_OUT_SEED:
        raise ValueError(f"seed {cfg.seed} is the held-out evaluation seed; pick another for training data")
    if cfg.tasks < 1 or cfg.per_noise < 1 or not cfg.noise_levels:
        raise ValueError("need tasks >= 1, per_noise >= 1 and at least one noise level")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    editors = {editor_name: editor, **(more_editors or {})}
    (out / "config.json").write_text(json.dumps({**asdict(cfg), "editor": editor_name, "editors": list(editors)},
                                                indent=1))
    tasks = sample_tasks(cfg.tasks, cfg.seed, size=cfg.size)
    sources = [t.source_image(cfg.size) for t in tasks]
    rng = np.random.default_rng([cfg.seed, 1])
    rows: list[dict] = []
    chunk = max(1, cfg.batch_size // cfg.per_noise)
    bar = tqdm(total=cfg.tasks * len(cfg.noise_levels) * len(editors), desc="editor samples", disable=not progress)
    samples: list[list[tuple[str, float, Any]]] = [[] for _ in tasks]
    for name, model in editors.items():
        for li, level in enumerate(cfg.noise_levels):
            for start in range(0, len(tasks), chunk):
                part = tasks[start:start + chunk]
                groups = sample_groups(model, sources[start:start + chunk], [t.instruction for t in part],
                                       cfg.per_noise, num_steps=cfg.num_steps, noise_level=level,
                                       seed=cfg.seed + 7919 * li + start, batch_size=cfg.batch_size,
                                       sde_window=cfg.sde_window)
                for k, images in enumerate(groups):
                    samples[start + k].extend((name, level, im) for im in images)
                bar.update(len(part))
    bar.close()
    pairs: list[dict] = []
    window = f"-window{cfg.sde_window}" if cfg.sde_window > 0 else ""
    for g, (task, source, cands) in enumerate(zip(tasks, sources, samples)):
        gid = f"p{g:06d}"
        src_rel = f"images/{gid}_source.png"
        source.save(out / src_rel)
        group_rows = []
        for c, (name, level, image) in enumerate(cands):
            rel = f"images/{gid}_c{c}.png"
            image.save(out / rel)
            oracle = oracle_scores(task, image)
            human = {d: [float(np.clip(oracle[d] + rng.normal(0.0, cfg.annotator_noise), 1.0, 4.0))]
                     for d in DIMENSIONS}
            group_rows.append({"id": f"{gid}_c{c}", "group_id": gid, "split": cfg.split, "source": src_rel,
                               "edited": rel, "instruction": task.instruction, "task": task.to_dict(),
                               "editor": {"name": f"{name}@noise{level:g}{window if level > 0 else ''}",
                                          "noise_level": level, "sde_window": cfg.sde_window if level > 0 else 0},
                               "true_scores": oracle, "human_scores": human})
        rows.extend(group_rows)
        if cfg.split == "train":
            pairs.extend(pair_row(a, b, cfg.tie_margin, name=lambda editor: editor["name"])
                         for a, b in itertools.combinations(group_rows, 2))
    write_jsonl(out / "manifest.jsonl", rows)
    write_jsonl(out / "pairs.jsonl", pairs)
    summary = {"groups": cfg.tasks, "candidates": len(rows), "train_pairs": len(pairs),
               "tie_pairs": sum(p["tie"] for p in pairs),
               "mean_oracle": {d: float(np.mean([r["true_scores"][d] for r in rows])) for d in DIMENSIONS}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    return summary
