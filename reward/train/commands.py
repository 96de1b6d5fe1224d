"""Handlers of ``editrl reward train`` and ``editrl reward pretrain`` (heavy imports inside the functions)."""

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


def pretrain(args: argparse.Namespace) -> int:
    """Pretrain the tiny backbone from ``--config`` plus dotted overrides; prints where the backbone went."""
    from editrl.config import load_config
    from reward.train.pretrain import pretrain as run_pretraining
    from reward.train.pretrain_config import PretrainConfig

    cfg = load_config(PretrainConfig, args.config, args.overrides)
    result = run_pretraining(cfg, progress=not getattr(args, "no_progress", False))
    val = ", ".join(f"{k} {v:.4f}" for k, v in result.val.items())
    print(f"pretrained {result.step} steps; {val}; backbone: {result.final_dir} (use it as model.backbone); "
          f"curve: {result.out_dir / 'training_curve.png'}")
    return 0
