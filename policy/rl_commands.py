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
    from policy.grpo_config import GRPOConfig
    from policy.online import train_grpo
    from policy.rl_report import plot_curves

    cfg = load_config(GRPOConfig, args.config, args.overrides)
    result = train_grpo(cfg)
    result["curves"] = str(plot_curves(result["metrics"], title=f"GRPO: {cfg.editor.spec}"))
    _summary("GRPO", result)
    return 0


def dpo(args: argparse.Namespace) -> int:
    """Online / offline-reference DPO of an editor on reward-ranked pairs (config: configs/policy/*-dpo.yaml)."""
    from editrl.config import load_config
    from policy.grpo_config import DPOConfig
    from policy.online_dpo import train_dpo
    from policy.rl_report import plot_curves

    cfg = load_config(DPOConfig, args.config, args.overrides)
    result = train_dpo(cfg)
    result["curves"] = str(plot_curves(result["metrics"], title=f"DPO: {cfg.editor.spec}"))
    _summary("DPO", result)
    return 0
