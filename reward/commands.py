"""``editrl reward score``: score edits of one source image and instruction with a reward checkpoint.

Heavy imports (torch, transformers) happen inside the handler so ``editrl --help`` stays light.
"""

from __future__ import annotations

import argparse


def score(args: argparse.Namespace) -> int:
    """Print per-dimension mu and sigma and the aggregate score of each edited image (a rich table)."""
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from editrl.io import DataError
    from reward.scorer import RewardScorer

    source = Path(args.source)
    if not source.is_file():
        raise DataError(source, "source image not found", field="--source")
    scorer = RewardScorer.from_checkpoint(args.checkpoint, device=args.device, batch_size=args.batch_size)
    results = scorer.score_group(str(source), args.instruction, [str(e) for e in args.edited])

    table = Table(title=f"EditReward ({scorer.cfg.aggregation} of {len(scorer.dimensions)} dimensions): "
                        f"{args.instruction!r}")
    table.add_column("edited")
    for dim in scorer.dimensions:
        table.add_column(f"{dim} mu", justify="right")
        table.add_column(f"{dim} sigma", justify="right")
    table.add_column("score", justify="right", style="bold")
    table.add_column("score sigma", justify="right")
    failed = 0
    for path, res in zip(args.edited, results):
        if res.error is not None:
            failed += 1
            table.add_row(str(path), *(["-"] * (2 * len(scorer.dimensions) + 2)))
            continue
        cells = []
        for dim in scorer.dimensions:
            cells += [f"{res.mu[dim]:.3f}", f"{res.sigma[dim]:.3f}"]
        table.add_row(str(path), *cells, f"{res.score:.3f}", f"{res.score_sigma:.3f}")
    console = Console()
    console.print(table)
    for path, res in zip(args.edited, results):
        if res.error is not None:
            console.print(f"[red]error[/red] {path}: {res.error}")
    return 1 if failed else 0
