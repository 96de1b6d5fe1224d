"""``editrl policy grpo`` and ``editrl policy dpo``: load the config, run the online loop, plot the curves.

Heavy imports (torch, diffusers, the reward model) happen inside the handlers.
"""

from __future__ import annotations

import argparse
from typing import Any


def _summary(title: str, result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in sorted(result["last"].items()):
        if key.startswith(("eval/", "reward_mean", "train/kl", "train/loss", "zero_advantage", "dpo/")):
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)
    print(f"metrics: {result['metrics']}\ncurves: {result['curves']}")


def grpo(args: argparse.Namespace) -> int:
    """Online GRPO of an editor against the reward model (config: configs/policy/*-grpo.yaml)."""
    from editrl.config import load_config
    from policy.config import GRPOConfig
    from policy.grpo import train_grpo
    from policy.rl_report import plot_curves

    cfg = load_config(GRPOConfig, args.config, args.overrides)
    result = train_grpo(cfg)
    if not result["is_main"]:
        return 0
    result["curves"] = str(plot_curves(result["metrics"], title=f"GRPO: {cfg.editor.spec}"))
    _summary("GRPO", result)
    return 0


def dpo(args: argparse.Namespace) -> int:
    """Online / offline-reference DPO of an editor on reward-ranked pairs (config: configs/policy/*-dpo.yaml)."""
    from editrl.config import load_config
    from policy.config import DPOConfig
    from policy.dpo import train_dpo
    from policy.rl_report import plot_curves

    cfg = load_config(DPOConfig, args.config, args.overrides)
    result = train_dpo(cfg)
    if not result["is_main"]:
        return 0
    result["curves"] = str(plot_curves(result["metrics"], title=f"DPO: {cfg.editor.spec}"))
    _summary("DPO", result)
    return 0


DIMENSION_LABELS = {"instruction_following": "oracle IF", "visual_quality": "oracle VQ"}
MARGIN_KEYS = {"eval/oracle_instruction_following": "oracle IF", "eval/oracle_visual_quality": "oracle VQ",
               "eval/reward": "learned reward"}  # metrics.jsonl key: label


def _interval_text(low: float, high: float) -> str:
    """A margins table's interval cell; one run has no interval, and the cell says so instead of printing NaN."""
    import math

    return "n/a (1 run)" if math.isnan(low) or math.isnan(high) else f"[{low:+.3f}, {high:+.3f}]"


def margins(args: argparse.Namespace) -> int:
    """The RL measurement of several seed runs: mean held-out gain per metric with its confidence interval."""
    import json
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from editrl.io import DataError
    from policy.rl_report import margin_over_seeds

    paths = []
    for run in args.runs:
        path = Path(run) / "metrics.jsonl"
        if not path.is_file():
            raise DataError(path, "missing: not an RL run folder (editrl policy grpo/dpo writes metrics.jsonl)")
        paths.append(path)
    if args.tasks > 0:
        return _reevaluated_margins(args)
    if args.checkpoint:
        from editrl.config import ConfigError

        raise ConfigError("--checkpoint: only with --tasks N (the runs' own evaluations are of their training curve)")
    results = {}
    table = Table(title=f"held-out gain over {len(paths)} runs (last eval - step 0), {args.confidence:.0%} t-interval")
    for col in ("metric", "mean", "interval", "per run"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key, label in MARGIN_KEYS.items():
        try:
            m = margin_over_seeds(paths, key, args.confidence)
        except ValueError:  # e.g. eval/reward where the runs did not score held-out edits with the learned reward
            continue
        results[key] = m
        lo, hi = m["ci"]
        table.add_row(label, f"{m['mean']:+.3f}", _interval_text(lo, hi), ", ".join(f"{g:+.3f}" for g in m["gains"]))
    Console().print(table)
    if args.plot:
        from policy.rl_report import plot_seed_curves

        print(f"curves: {plot_seed_curves(paths, args.plot, title=f'{len(paths)} runs')}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"runs": [str(p.parent) for p in paths], "margins": results}, indent=1))
    return 0


def _reevaluated_margins(args: argparse.Namespace) -> int:
    """``margins --tasks N``: gains of the runs' final policies over their starting editor on N held-out tasks."""
    import json
    from pathlib import Path

    import torch
    from rich.console import Console
    from rich.table import Table

    from editworld import DIMENSIONS
    from policy.evaluate import reevaluate_runs
    from policy.rl_report import t_interval

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    per_run = reevaluate_runs(args.runs, args.tasks, args.eval_seed, args.eval_steps, checkpoint=args.checkpoint)
    which = f"the {args.checkpoint} policy" if args.checkpoint else "the final policy"
    table = Table(title=f"gain of {which} over its starting editor on {args.tasks} held-out tasks, "
                        f"{len(per_run)} runs, {args.confidence:.0%} t-interval")
    for col in ("metric", "before", "mean gain", "interval", "per run"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    results = {}
    # each dimension, then the aggregate the learned reward optimises: the mean of the dimensions
    metrics = [(f"oracle_{d}", DIMENSION_LABELS.get(d, d), lambda s, d=d: s[d]) for d in DIMENSIONS]
    metrics.append(("oracle_mean", "oracle mean of dimensions", lambda s: sum(s[d] for d in DIMENSIONS) / len(DIMENSIONS)))
    for key, label, value in metrics:
        gains = [value(r["after"]) - value(r["before"]) for r in per_run.values()]
        m = {"key": key, **t_interval(gains, args.confidence)}
        results[key] = m
        lo, hi = m["ci"]
        before = sorted({round(value(r["before"]), 4) for r in per_run.values()})
        table.add_row(label, ", ".join(f"{b:.3f}" for b in before), f"{m['mean']:+.3f}",
                      _interval_text(lo, hi), ", ".join(f"{g:+.3f}" for g in gains))
    Console().print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"runs": per_run, "margins": results}, indent=1))
    return 0
