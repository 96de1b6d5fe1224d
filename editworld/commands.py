"""Handlers of `editrl world ...` (argument parsing lives in editrl/cli.py)."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def generate(args: argparse.Namespace) -> int:
    from editworld.config import WorldConfig
    from editworld.dataset import generate as write

    cfg = WorldConfig(groups=args.groups, seed=args.seed, size=args.size, bench_fraction=args.bench_fraction)
    summary = write(args.out, cfg)
    print(json.dumps(summary, indent=1))
    return 0


def check(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from editworld.check import check_dataset

    report = check_dataset(args.dataset)
    console = Console()
    hist = Table(title=f"score histograms ({report['candidates']} candidates)")
    hist.add_column("dimension")
    for s in (1, 2, 3, 4):
        hist.add_column(f"true={s}")
    for dim, counts in report["true_histogram"].items():
        hist.add_row(dim, *[str(counts[str(s)]) for s in (1, 2, 3, 4)])
    console.print(hist)
    t = Table(title="agreement")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("tie rate (train pairs)", f"{report['tie_rate']:.3f}")
    for dim, v in report["annotator_agreement"].items():
        t.add_row(f"annotators, exact agreement ({dim})", f"{v['exact']:.3f}")
        t.add_row(f"annotators, mean pairwise Spearman ({dim})", f"{v['spearman']:.3f}")
    for dim, v in report["oracle_spearman"].items():
        t.add_row(f"oracle vs true, Spearman ({dim})", f"{v:.3f}")
    console.print(t)
    print(f"wrote {Path(args.dataset) / 'check.json'} and {Path(args.dataset) / 'check_histograms.png'}")
    return 0


def bench(args: argparse.Namespace) -> int:
    from editworld.config import WorldConfig
    from editworld.dataset import generate as write

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        start = time.perf_counter()
        write(out, WorldConfig(groups=args.groups, seed=0), progress=False)
        elapsed = time.perf_counter() - start
    print(f"generated {args.groups} groups ({args.groups * 7} candidates) in {elapsed:.1f} s "
          f"({args.groups / elapsed:.1f} groups/s)")
    return 0
