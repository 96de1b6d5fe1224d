"""Handlers of ``editrl reward train`` and ``editrl reward eval`` (heavy imports inside the functions)."""

from __future__ import annotations

import argparse


def train(args: argparse.Namespace) -> int:
    """Train a reward model from ``--config`` plus dotted overrides; prints where the model went."""
    from editrl.config import load_config
    from reward.train_config import RewardTrainConfig
    from reward.trainer import train as run_training

    cfg = load_config(RewardTrainConfig, args.config, args.overrides)
    result = run_training(cfg, progress=not getattr(args, "no_progress", False))
    acc = "n/a" if result.val_accuracy is None else f"{result.val_accuracy:.4f}"
    print(f"trained {result.step} steps; validation pairwise accuracy {acc}; model: {result.final_dir}; "
          f"curve: {result.out_dir / 'training_curve.png'}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """Pairwise accuracy of a checkpoint on an editworld bench split, beside the baselines."""
    from reward.evaluate import run_editworld_eval

    run_editworld_eval(args.checkpoint, args.data, out_dir=args.out, batch_size=args.batch_size,
                       baselines=not args.no_baselines, max_items=args.max_items)
    return 0
