"""Configuration of a scene-grounded pretraining run of the tiny reward backbone (``editrl reward pretrain``).

Loaded only through ``editrl.config.load_config(PretrainConfig, path, overrides)``; the loop is
``reward/train/pretrain.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from reward.model.config import RewardModelConfig


@dataclass
class PretrainDataSection:
    """Which grounded examples the run draws."""

    describe_share: float = 0.5  # share of "describe the edit" examples; the rest are "was it done?" questions
    image_size: int = 32  # side of the rendered images (the reward's pixel_area must cover it)
    val_examples: int = 256  # fixed held-out examples scored at each validation


@dataclass
class PretrainOptimSection:
    """Optimisation, budget and cadence."""

    lr: float = 1.0e-3  # peak AdamW learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_ratio: float = 0.03  # share of max_steps warming the learning rate up linearly
    schedule: str = "cosine"  # learning-rate schedule after warm-up (transformers.get_scheduler names)
    batch_size: int = 48  # examples per optimiser step
    max_steps: int = 3000  # optimiser steps
    time_budget_minutes: float | None = None  # stop (and save) after this many minutes even if steps remain
    max_grad_norm: float = 1.0  # clip the global gradient norm (0 disables)
    # How the next-token loss is averaged: over all answer tokens of the batch ("token", a long caption weighs
    # as many one-word verdicts), or over each example's answer first, then over examples ("example").
    loss_mean: Literal["token", "example"] = "token"
    log_every: int = 10  # training metrics every this many steps
    eval_every: int = 250  # validation every this many steps (and at the end)
    save_every: int = 250  # resumable checkpoint every this many steps (and at the end); 0 = only at the end
    keep_checkpoints: int = 2  # newest complete checkpoints kept
    seed: int = 0  # seed of the example stream and dropout (the weights' init seed is model.tiny.seed)
    num_threads: int | None = None  # torch intra-op threads on CPU; None = torch's default


@dataclass
class PretrainConfig:
    """A whole pretraining run; ``model`` uses only its tiny-backbone fields (sizes, init, patch size, pixel area)."""

    # The backbone to build: model.backbone must be "tiny"; its tiny sizes, init, patch size and pixel_area are used
    # (the head and prompt fields are not: stage 0 has no heads).
    model: RewardModelConfig = field(default_factory=RewardModelConfig)
    data: PretrainDataSection = field(default_factory=PretrainDataSection)
    train: PretrainOptimSection = field(default_factory=PretrainOptimSection)
    # Output folder: config.yaml, metrics.jsonl, checkpoints/, final/ (the backbone for `model.backbone`).
    out_dir: str = "runs/reward-pretrain"
    resume: str | None = None  # "auto" = the newest complete checkpoint in out_dir; a checkpoint folder; None = fresh
    wandb_project: str | None = None  # mirror metrics to wandb; None = JSONL only


__all__ = ["PretrainConfig", "PretrainDataSection", "PretrainOptimSection"]
