"""The paper's Table 3 in miniature: does SFT on reward-curated data beat SFT on the full noisy set?

1. A noisy editworld training set of ``(source, instruction, target)`` rows, like ShareGPT-4o-Image: for a
   share of the tasks (``noise_fraction``) the "target" is a flawed edit from the editworld's simulated
   editors (instruction-following and/or visual-quality failures at random severities), otherwise the
   clean re-rendered target. The truth (flawed or not, true scores) is kept in every row for analysis.
2. ``editrl curate`` machinery scores it with the reward model and keeps the top ``keep_fraction``.
3. Three SFT runs with identical budgets (same optimiser steps, batch size, seed and initialisation):
   (a) the full noisy set, (b) the curated subset, (c) a random subset of the curated subset's size.
   Equal *steps* is the fair compute budget; the subsets are therefore seen for more epochs, as when the
   paper fine-tunes on 20K instead of 46K examples.
4. Each editor edits the same held-out tasks (``HELD_OUT_SEED``) with the same noise; the pixel oracle
   scores the results. Per-arm means carry a bootstrap 95% CI over tasks, and the curated-minus-full and
   curated-minus-random differences a paired bootstrap CI.

Initialisation: every arm starts from the *same random init* (the tiny editor architecture, seeded), not
from the shipped editor: the shipped editor was trained on clean editworld targets, so fine-tuning it
would measure how fast noise erodes a solved task, not what each training set teaches.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

ARMS = ("full", "curated", "random")


@dataclass
class Table3Config:
    """One miniature Table 3 run (defaults: about 3 x 5 minutes of SFT on a 2-core CPU)."""

    out: str = "runs/table3"  # output folder
    reward: str = "reward/weights/editworld-tiny"  # reward checkpoint (or ray://NAME) used for curation
    n_train: int = 2000  # rows of the noisy training set
    noise_fraction: float = 0.45  # share of rows whose target is a flawed edit
    keep_fraction: float = 0.5  # curated subset = top fraction by reward score
    uncertainty_k: float = 0.0  # curate by score - k * sigma
    size: int = 32  # image side
    data_seed: int = 11  # seed of the training tasks and flaws (disjoint from HELD_OUT_SEED)
    seed: int = 0  # SFT seed (same init, data order stream) and the random-subset draw
    sft_steps: int = 1500  # optimiser steps per arm (identical for all arms)
    sft_batch_size: int = 32  # SFT batch size (identical for all arms)
    sft_overrides: list[str] = field(default_factory=list)  # extra `editrl policy sft` key=value overrides
    n_eval: int = 200  # held-out tasks
    eval_steps: int = 20  # sampling steps at evaluation (ODE, no noise)
    eval_batch_size: int = 50  # edits per sampling call of the held-out evaluation
    bootstrap: int = 2000  # bootstrap resamples for the CIs
    progress: bool = True  # tqdm bars

    def with_budget_minutes(self, minutes: float, steps_per_second: float = 1.7) -> "Table3Config":
        """Scale SFT steps to about ``minutes`` per arm at ``steps_per_second`` (measured on the 2-core box)."""
        return replace(self, sft_steps=max(10, int(minutes * 60 * steps_per_second)))


# ---- 1. the noisy training set ----------------------------------------------------------------------
def flawed_failures(rng: np.random.Generator) -> tuple[str, int, str, int]:
    """A random flaw: an instruction-following failure, a visual-quality failure, or both (never neither)."""
    from editworld.editors import IF_FAILURES, VQ_FAILURES

    kind = rng.choice(["if", "vq", "both"], p=[0.4, 0.3, 0.3])
    if_f = str(rng.choice(IF_FAILURES[1:])) if kind in ("if", "both") else "none"
    vq_f = str(rng.choice(VQ_FAILURES[1:])) if kind in ("vq", "both") else "none"
    return if_f, int(rng.integers(1, 4)), vq_f, int(rng.integers(1, 4))


def write_noisy_dataset(out: str | Path, n: int, noise_fraction: float, seed: int, size: int = 32,
                        progress: bool = True) -> Path:
    """Write ``n`` SFT rows ``{id, source, instruction, target, ...}`` where about ``noise_fraction`` of the
    targets are flawed edits; returns the manifest path. Rows keep ``flawed`` and ``true_scores``."""
    from PIL import Image
    from tqdm import tqdm

    from editrl.io import write_jsonl
    from editworld.editors import make_candidate
    from editworld.tasks import sample_task

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)

    def rows():
        for i in tqdm(range(n), desc="table3: noisy set", disable=not progress):
            rng = np.random.default_rng([seed, i])
            task = sample_task(rng, size)
            src, tgt = f"images/{i:06d}_source.png", f"images/{i:06d}_target.png"
            Image.fromarray(task.source_array(size)).save(out / src)
            flawed = bool(rng.random() < noise_fraction)
            if flawed:
                cand = make_candidate(task, *flawed_failures(rng), size, rng)
                image, editor, scores = cand.image, cand.editor_info(), cand.scores
                flawed = min(scores.values()) < 4  # a flaw the rubric does not see (e.g. invisible blur) is clean
            else:
                image, editor, scores = task.target_array(size), None, {"instruction_following": 4, "visual_quality": 4}
            Image.fromarray(image).save(out / tgt)
            yield {"id": f"n{i:06d}", "source": src, "instruction": task.instruction, "target": tgt,
                   "task": task.to_dict(), "flawed": flawed, "editor": editor, "true_scores": scores}

    return write_jsonl(out / "manifest.jsonl", rows())


def random_subset(manifest: str | Path, k: int, seed: int, out: str | Path) -> Path:
    """A uniformly random ``k``-row subset of a manifest (image paths made valid from ``out``'s folder)."""
    from editrl.io import read_jsonl, write_jsonl

    rows = read_jsonl(manifest)
    picked = sorted(random.Random(seed).sample(range(len(rows)), k))
    return write_jsonl(out, [_rebase(rows[i], Path(manifest).parent, Path(out).parent) for i in picked])


def _rebase(row: dict[str, Any], src_dir: Path, dst_dir: Path) -> dict[str, Any]:
    import os

    row = dict(row)
    for name in ("source", "target"):
        row[name] = os.path.relpath(os.path.abspath(src_dir / row[name]), os.path.abspath(dst_dir))
    return row


def flaw_share(manifest: str | Path) -> dict[str, float]:
    """Share of flawed targets and mean true scores of a manifest (what curation should improve)."""
    from editrl.dimensions import DIMENSIONS
    from editrl.io import read_jsonl

    rows = read_jsonl(manifest)
    return {"rows": len(rows), "flawed_share": float(np.mean([r["flawed"] for r in rows])) if rows else math.nan,
            **{f"true_{d}": float(np.mean([r["true_scores"][d] for r in rows])) if rows else math.nan
               for d in DIMENSIONS}}


# ---- 3. SFT through the policy package's public command ---------------------------------------------
def sft_command(manifest: Path, out: Path, cfg: Table3Config) -> list[str]:
    """The ``editrl policy sft`` command line of one arm: a fresh tiny editor (seeded init), the arm's manifest,
    and the budget every arm shares; the held-out evaluation is ours (same tasks and noise for all arms)."""
    import sys

    return [sys.executable, "-m", "editrl.cli", "policy", "sft", "editor.spec=new-tiny", f"data.source={manifest}",
            f"out={out}", f"save_to={out / 'editor'}", f"seed={cfg.seed}", f"train.max_steps={cfg.sft_steps}",
            f"train.batch_size={cfg.sft_batch_size}", "train.time_budget_minutes=0", "eval.num_tasks=0",
            f"progress={'true' if cfg.progress else 'false'}", "wandb_project=null", *cfg.sft_overrides]


def run_sft(manifest: Path, out: Path, cfg: Table3Config) -> Path:
    """Fine-tune the tiny editor on ``manifest`` with the arm-independent budget; returns the editor folder.

    Runs ``editrl policy sft`` in a child process: curation does not import ``policy`` (the layering of
    docs/architecture.md), and each arm starts from a clean interpreter."""
    import subprocess

    cmd = sft_command(manifest, out, cfg)
    done = subprocess.run(cmd, check=False)
    if done.returncode:
        raise RuntimeError(f"editrl policy sft failed with exit code {done.returncode}: {' '.join(cmd)}")
    return out / "editor"


# ---- 4. evaluation -----------------------------------------------------------------------------------
def held_out_scores(editor_dir: str | Path, cfg: Table3Config) -> dict[str, list[float]]:
    """Oracle scores of the editor's edits of the held-out tasks (ODE sampling, fixed noise; ``rollout.held_out``)."""
    import torch

    from rollout.held_out import edit_tasks, held_out_tasks, oracle_scores_of
    from rollout.registry import load_editor

    tasks = held_out_tasks(cfg.n_eval, cfg.size)
    gen = torch.Generator().manual_seed(cfg.seed + 12345)
    edits = edit_tasks(load_editor(str(editor_dir)), tasks, cfg.eval_steps, cfg.eval_batch_size, gen, cfg.size)
    return oracle_scores_of(tasks, edits)


def bootstrap_ci(values: np.ndarray, n: int, seed: int) -> tuple[float, float]:
    """95% percentile bootstrap CI of the mean."""
    if values.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (n, values.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(lo), float(hi)


def summarise(scores: dict[str, dict[str, list[float]]], n_boot: int, seed: int) -> dict[str, Any]:
    """Per arm and dimension: mean and CI; paired differences of curated against the other arms."""
    out: dict[str, Any] = {"arms": {}, "differences": {}}
    for arm, per_dim in scores.items():
        out["arms"][arm] = {}
        for d, v in per_dim.items():
            a = np.asarray(v, dtype=np.float64)
            out["arms"][arm][d] = {"mean": float(a.mean()), "ci95": bootstrap_ci(a, n_boot, seed)}
    if "curated" in scores:
        for other in (a for a in scores if a != "curated"):
            out["differences"][f"curated-{other}"] = {}
            for d in scores["curated"]:
                diff = np.asarray(scores["curated"][d]) - np.asarray(scores[other][d])
                out["differences"][f"curated-{other}"][d] = {"mean": float(diff.mean()),
                                                             "ci95": bootstrap_ci(diff, n_boot, seed)}
    return out


# ---- the whole experiment ----------------------------------------------------------------------------
def run_table3(cfg: Table3Config, client: Any = None,
               sft: Callable[[Path, Path, Table3Config], Path] = run_sft) -> dict[str, Any]:
    """Run the experiment end to end; writes table3.json and table3.png in ``cfg.out`` and returns the result."""
    from curation.run import run_curation
    from curation.config import CurateConfig, SelectionConfig
    from editrl.config import save_config

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    manifest = write_noisy_dataset(out / "data", cfg.n_train, cfg.noise_fraction, cfg.data_seed, cfg.size, cfg.progress)
    timings["data_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    curate_cfg = CurateConfig(input=str(manifest), reward=cfg.reward, out=str(out / "curate"), progress=cfg.progress,
                              selection=SelectionConfig(top_fraction=cfg.keep_fraction, uncertainty_k=cfg.uncertainty_k))
    curation = run_curation(curate_cfg, client=client)
    timings["curate_s"] = time.perf_counter() - t0
    kept = out / "curate" / "kept.jsonl"
    subsets = {"full": manifest, "curated": kept,
               "random": random_subset(manifest, curation["kept"], cfg.seed, out / "random" / "manifest.jsonl")}

    scores: dict[str, dict[str, list[float]]] = {}
    for arm in ARMS:
        t0 = time.perf_counter()
        editor_dir = sft(subsets[arm], out / f"sft-{arm}", cfg)
        timings[f"sft_{arm}_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores[arm] = held_out_scores(editor_dir, cfg)
        timings[f"eval_{arm}_s"] = time.perf_counter() - t0

    result = summarise(scores, cfg.bootstrap, cfg.seed)
    result["data"] = {arm: flaw_share(path) for arm, path in subsets.items()}
    result["curation"] = {k: curation[k] for k in ("total", "scored", "rejected", "kept")}
    result["config"] = asdict(cfg)
    result["timings"] = timings
    (out / "table3.json").write_text(json.dumps(result, indent=1, sort_keys=True))
    (out / "per_task_scores.json").write_text(json.dumps(scores))
    plot_table3(result, out / "table3.png")
    return result


def plot_table3(result: dict[str, Any], path: Path) -> Path:
    """Grouped bars: oracle score per dimension for each arm, with the bootstrap CIs as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from editrl.report import save_figure

    arms = list(result["arms"])
    dims = list(result["arms"][arms[0]])
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    width = 0.8 / len(arms)
    colours = {"full": "#999999", "curated": "#2b7bba", "random": "#e39c3b"}
    for i, arm in enumerate(arms):
        means = [result["arms"][arm][d]["mean"] for d in dims]
        err = [[m - result["arms"][arm][d]["ci95"][0] for m, d in zip(means, dims)],
               [result["arms"][arm][d]["ci95"][1] - m for m, d in zip(means, dims)]]
        xs = [j + (i - (len(arms) - 1) / 2) * width for j in range(len(dims))]
        ax.bar(xs, means, width, yerr=err, capsize=3, label=f"{arm} ({result['data'][arm]['rows']} rows)",
               color=colours.get(arm))
    ax.set_xticks(range(len(dims)), [d.replace("_", " ") for d in dims])
    ax.set_ylabel("oracle score on held-out tasks (1-4)")
    ax.set_ylim(1, 4)
    ax.set_title("SFT on full noisy set vs reward-curated vs random subset", fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=110)


def print_table(result: dict[str, Any]) -> None:
    """The table as a rich table (means with 95% CIs, training-set flaw share)."""
    from rich.table import Table

    from editrl.report import console as make_console

    dims = list(next(iter(result["arms"].values())))
    table = Table(title="miniature Table 3: oracle scores of SFT editors on held-out editworld tasks")
    table.add_column("training set")
    table.add_column("rows", justify="right")
    table.add_column("flawed targets", justify="right")
    for d in dims:
        table.add_column(d, justify="right")
    for arm, per_dim in result["arms"].items():
        data = result["data"][arm]
        table.add_row(arm, str(data["rows"]), f"{100 * data['flawed_share']:.0f}%",
                      *[f"{per_dim[d]['mean']:.3f} [{per_dim[d]['ci95'][0]:.3f}, {per_dim[d]['ci95'][1]:.3f}]" for d in dims])
    for name, per_dim in result["differences"].items():
        table.add_row(name, "", "", *[f"{per_dim[d]['mean']:+.3f} [{per_dim[d]['ci95'][0]:+.3f}, "
                                      f"{per_dim[d]['ci95'][1]:+.3f}]" for d in dims])
    make_console().print(table)
