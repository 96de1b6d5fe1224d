"""Handler of ``editrl reward train`` (heavy imports inside the function)."""

from __future__ import annotations

import argparse


def train(args: argparse.Namespace) -> int:
    """Train a reward model from ``--config`` plus dotted overrides; prints where the model went."""
    from editrl.config import load_config
    from reward.train.config import RewardTrainConfig
    from reward.train.trainer import train as run_training

    cfg = load_config(RewardTrainConfig, args.config, args.overrides)
    result = run_training(cfg, progress=not getattr(args, "no_progress", False))
    acc = "n/a" if result.val_accuracy is None else f"{result.val_accuracy:.4f}"
    print(f"trained {result.step} steps; validation pairwise accuracy {acc}; model: {result.final_dir}; "
          f"curve: {result.out_dir / 'training_curve.png'}")
    return 0
