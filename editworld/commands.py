"""Handlers of `editrl world ...` (argument parsing lives in editrl/cli.py)."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def generate(args: argparse.Namespace) -> int:
    """Write a dataset: preset (--config), then dotted overrides, then the explicit flags."""
    from editrl.config import load_config
    from editworld.config import WorldConfig
    from editworld.dataset import generate as write

    flags = {"groups": args.groups, "seed": args.seed, "size": args.size, "bench_fraction": args.bench_fraction}
    overrides = list(args.overrides) + [f"{k}={v}" for k, v in flags.items() if v is not None]
    cfg = load_config(WorldConfig, args.config, overrides)
    summary = write(args.out, cfg)
    print(json.dumps(summary, indent=1))
    return 0


def check(args: argparse.Namespace) -> int:
    """Print a dataset's statistics as rich tables; writes check.json and check_histograms.png beside it."""
    from rich.console import Console
    from rich.table import Table

    from editworld.check import check_dataset

    report = check_dataset(args.dataset)
    console = Console()
    hist = Table(title=f"score histograms ({report['candidates']} candidates; oracle rounded)")
    hist.add_column("dimension")
    hist.add_column("scores")
    for s in (1, 2, 3, 4):
        hist.add_column(f"{s}", justify="right")
    for dim in report["true_histogram"]:
        for name in ("true", "human", "oracle"):
            counts = report[f"{name}_histogram"][dim]
            hist.add_row(dim if name == "true" else "", name, *[str(counts[str(s)]) for s in (1, 2, 3, 4)])
    console.print(hist)
    t = Table(title="agreement")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("tie rate (train pairs)", f"{report['tie_rate']:.3f}")
    for dim, v in report["annotator_agreement"].items():
        t.add_row(f"annotators, exact agreement ({dim})", f"{v['exact']:.3f}")
        t.add_row(f"annotators, mean pairwise Spearman ({dim})", f"{v['spearman']:.3f}")
        t.add_row(f"annotators, Krippendorff alpha ({dim})", f"{v['krippendorff_alpha']:.3f}")
    for dim, v in report["oracle_spearman"].items():
        t.add_row(f"oracle vs true, Spearman ({dim})", f"{v:.3f}")
    console.print(t)
    print(f"wrote {Path(args.dataset) / 'check.json'} and {Path(args.dataset) / 'check_histograms.png'}")
    return 0


def bench(args: argparse.Namespace) -> int:
    """Time the generation of ``--groups`` groups (the issue's budget: 1,000 groups in under 60 s)."""
    from editworld.config import WorldConfig
    from editworld.dataset import generate as write

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        start = time.perf_counter()
        cfg = WorldConfig(groups=args.groups, seed=0, workers=args.workers)
        summary = write(out, cfg, progress=False)
        elapsed = time.perf_counter() - start
    print(f"generated {args.groups} groups ({summary['candidates']} candidates + {2 * args.groups} sources/targets) "
          f"in {elapsed:.1f} s ({args.groups / elapsed:.1f} groups/s, {cfg.workers} worker(s))")
    return 0
