"""``editrl curate``: score a dataset with the reward model and keep the best (or reproduce Table 3).

Heavy imports (torch, the reward model) happen inside the functions.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from editrl.config import ConfigError


def _selection_overrides(args: argparse.Namespace) -> list[str]:
    """The selection flags as dotted config overrides (so flags, --config and key=value share one path)."""
    out: list[str] = []
    if args.top_k is not None:  # a count flag replaces the other count rule of a --config preset
        out += [f"selection.top_k={args.top_k}", "selection.top_fraction=null"]
    if args.top_fraction is not None:
        out += [f"selection.top_fraction={args.top_fraction}", "selection.top_k=null"]
    if args.threshold is not None:
        out.append(f"selection.threshold={args.threshold}")
    if args.uncertainty_k is not None:
        out.append(f"selection.uncertainty_k={args.uncertainty_k}")
    for item in args.min_dim or []:
        dim, sep, value = item.partition("=")
        if not sep or not dim:
            raise ConfigError(f"--min-dim {item!r}: expected DIMENSION=VALUE, e.g. visual_quality=2.5")
        out.append(f"selection.min_dims.{dim.strip()}={value.strip()}")
    return out


def build_config(args: argparse.Namespace) -> Any:
    """CurateConfig from --config, then the explicit flags, then positional key=value overrides."""
    from curation.config import CurateConfig
    from editrl.config import load_config

    overrides: list[str] = []
    for flag, key in (("input", "input"), ("input_format", "input_format"), ("reward", "reward"), ("out", "out"),
                      ("batch_size", "batch_size"), ("device", "device")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    if getattr(args, "no_progress", False):
        overrides.append("progress=false")
    cfg = load_config(CurateConfig, args.config, overrides + _selection_overrides(args) + list(args.overrides or []))
    if not cfg.input:
        raise ConfigError("curate: --input is required (or --reproduce-table3)")
    return cfg


def print_summary(summary: dict[str, Any], out: str | Path) -> None:
    """A rich table of counts and score statistics."""
    from rich.table import Table

    from editrl.report import console as make_console

    table = Table(title=f"curate -> {out}")
    for col in ("", "n", "mean", "p10", "median", "p90"):
        table.add_column(col, justify="right")
    for name, st in summary["scores"].items():
        kept = summary["kept_scores"].get(name, {})
        for label, s in ((f"{name} (all)", st), (f"{name} (kept)", kept)):
            if s.get("n"):
                table.add_row(label, str(s["n"]), f"{s['mean']:.3f}", f"{s['p10']:.3f}", f"{s['median']:.3f}",
                              f"{s['p90']:.3f}")
    console = make_console()
    console.print(table)
    timing = summary.get("last_call", {})
    console.print(f"total {summary['total']}  scored {summary['scored']}  rejected {summary['rejected']}  "
                  f"kept {summary['kept']}  ({timing.get('rows_per_s', 0):.1f} rows/s this call)")
    if summary["rejected"]:
        console.print(f"rejected rows, each with file:line, field and reason: {Path(out) / 'rejects.jsonl'}")
    for note in summary.get("notes", []):
        console.print(f"note: {note}")


def curate(args: argparse.Namespace) -> int:
    """Handler of ``editrl curate``."""
    if args.reproduce_table3:
        from curation.table3 import Table3Config, print_table, run_table3
        from editrl.config import load_config

        flags = [f"{k}={getattr(args, k)}" for k in ("out", "reward") if getattr(args, k) is not None]
        if args.no_progress:
            flags.append("progress=false")
        cfg = load_config(Table3Config, args.config, flags + list(args.overrides or []))
        if args.budget_minutes is not None:
            cfg = cfg.with_budget_minutes(args.budget_minutes)
        result = run_table3(cfg)
        print_table(result)
        return 0
    from curation.run import run_curation

    cfg = build_config(args)
    summary = run_curation(cfg, restart=getattr(args, "restart", False))
    print_summary(summary, cfg.out)
    return 0
