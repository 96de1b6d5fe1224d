"""Handlers of ``editrl reward eval`` and ``editrl reward ablate`` (heavy imports inside the functions)."""

from __future__ import annotations

import argparse


def evaluate(args: argparse.Namespace) -> int:
    """Table 2 of the paper: every ``--checkpoint`` and baseline on the editworld bench (``--data``) and the
    external benchmarks (``--bench NAME=PATH``); or ``--from-scores DIR`` to recompute it from saved scores."""
    from pathlib import Path

    from editrl.config import ConfigError
    from reward.eval.table2 import parse_baselines, parse_bench_args, run_eval_suite, run_from_scores

    checkpoints = list(getattr(args, "checkpoint", None) or [])
    benches = parse_bench_args(getattr(args, "bench", None))
    if getattr(args, "from_scores", None):
        if checkpoints or benches or args.data:
            raise ConfigError("reward eval: --from-scores recomputes metrics from saved scores only; "
                              "drop --checkpoint / --data / --bench")
        run_from_scores(args.from_scores, args.out, protocol=getattr(args, "protocol", "both"))
        return 0
    if not checkpoints:
        raise ConfigError("reward eval: give --checkpoint CKPT (repeatable) or --from-scores DIR")
    baselines = [] if getattr(args, "no_baselines", False) else parse_baselines(getattr(args, "baselines", "random,pixel,untrained"))
    out = Path(args.out) if args.out else Path(checkpoints[0]) / "eval"
    run_eval_suite(checkpoints, data=args.data, benches=benches, image_root=getattr(args, "image_root", None),
                   baselines=baselines, out_dir=out, batch_size=args.batch_size, max_items=args.max_items,
                   protocol=getattr(args, "protocol", "both"))
    print(f"wrote {out / 'table2.json'}, {out / 'table2.png'} and per-item scores under {out / 'scores'}")
    return 0


def ablate(args: argparse.Namespace) -> int:
    """Tables 4 and 7: train every variant of ``--config`` on one budget and compare them (resumable)."""
    from reward.eval.ablate import load_ablation, run_ablation

    extra = list(args.overrides) + ([f"out_dir={args.out}"] if getattr(args, "out", None) else [])
    cfg = load_ablation(args.config, extra)
    run_ablation(cfg, progress=not getattr(args, "no_progress", False))
    return 0
