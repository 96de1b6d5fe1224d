"""``editrl policy sft`` and ``editrl policy eval`` handlers. Heavy imports happen inside the handlers."""

from __future__ import annotations

import argparse


def sft(args: argparse.Namespace) -> int:
    """Flow-matching SFT of an editor (config + dotted overrides); prints the summary."""
    from editrl.config import load_config
    from policy.sft import train_sft
    from policy.sft_config import SFTConfig

    cfg = load_config(SFTConfig, args.config, args.overrides)
    if args.no_progress:
        cfg.progress = False
    summary = train_sft(cfg)
    print(f"trained {summary['steps']} steps in {summary['seconds']} s, last loss {summary['last_loss']:.4f}; "
          f"editor saved to {summary['final']}")
    if "eval" in summary:
        _print_eval(summary["eval"], f"held-out editworld tasks ({cfg.eval.num_tasks}, {cfg.eval.num_steps} ODE steps)")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """Mean oracle scores of an editor on held-out editworld tasks, beside no-op and ground truth; a PNG grid."""
    import torch

    from policy.evaluate import save_grid
    from rollout.held_out import evaluate_editor
    from rollout.registry import load_editor

    if args.threads:
        torch.set_num_threads(args.threads)
    editor = load_editor(args.editor)
    rows, tasks, edits = evaluate_editor(editor, args.tasks, args.steps, args.batch_size, seed=args.seed,
                                         size=args.size)
    _print_eval(rows, f"{args.editor}: {args.tasks} held-out editworld tasks, {args.steps} ODE steps")
    grid = save_grid(tasks[:args.grid_rows], edits[:args.grid_rows], args.grid, size=args.size)
    print(f"grid (source | instruction | edit | target): {grid}")
    return 0


def _print_eval(rows: dict[str, dict[str, float]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("images")
    dims = list(next(iter(rows.values())))
    for d in dims:
        table.add_column(f"oracle {d}", justify="right")
    for who, scores in rows.items():
        table.add_row(who, *(f"{scores[d]:.3f}" for d in dims))
    Console().print(table)
