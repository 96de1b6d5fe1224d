"""Configuration of a reward-model training run (``editrl reward train``).

A dataclass tree in the trl style: one section for the model (owned by ``reward/model/config.py``), one for
the data, one for the optimisation; every field says what it does. Loaded only through
``editrl.config.load_config(RewardTrainConfig, path, overrides)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from reward.model.config import RewardModelConfig


@dataclass
class RewardDataConfig:
    """Where the preference pairs come from and how they become training samples."""

    # An editworld dataset folder (reads its pairs.jsonl), an editworld-style pairs .jsonl file, or an
    # official EditReward-Data JSON file (a list of {prompt, path_src, path1 (preferred), path2, ...}).
    train: str = "runs/world-train"
    # More pair sources trained on beside `train` (same formats), e.g. an editor's own oracle-labelled samples
    # from `editrl world editor-samples`; their groups are split for validation like those of `train`.
    extra_train: list[str] = field(default_factory=list)
    # Folder that relative image paths of an official JSON are resolved against (default: the JSON's folder).
    image_root: str | None = None
    # Validation: a separate pair file/folder, or None to hold out `val_fraction` of the training groups.
    val: str | None = None
    # Share of (source, instruction) groups held out for validation when `val` is None (0 disables validation).
    val_fraction: float = 0.05
    # Paper eq. 6: a tie whose dimensions disagree becomes two samples with opposite labels; other ties are dropped.
    tie_disentangle: bool = True
    # Use at most this many training pairs (data-size ablation); None = all of them.
    max_pairs: int | None = None
    # Maximum number of validation pairs scored at each evaluation (keeps evaluation cheap); None = all.
    max_val_pairs: int | None = 512
    # Training objective: the paper's uncertainty-aware ranking loss, plain Bradley-Terry, or point-wise regression (eq. 5),
    # or "probit": the Thurstone likelihood P(w > l) = Phi((mu_w - mu_l) / sqrt(s_w^2 + s_l^2)), whose sigma does not
    # collapse (the paper's loss is smallest at sigma -> 0 for every pair; docs/reward-training.md, "Uncertainty").
    # The dimensions are combined by `model.aggregation` (mean / min / sum), in the loss and in scoring alike; with
    # "probit" the per-dimension term (`dimension_loss_weight`) is probit too.
    loss: Literal["uncertainty", "probit", "bradley_terry", "pointwise"] = "uncertainty"
    # Weight of the per-dimension ranking loss added to a ranking objective: each head is also ranked on its own
    # dimension's human labels (reward.train.loss.dimension_ranking_loss); 0 = the paper's aggregated loss alone.
    dimension_loss_weight: float = 0.0
    # Expectation estimator of the uncertainty loss: deterministic Gauss-Hermite or the official Monte Carlo.
    estimator: Literal["quadrature", "mc"] = "quadrature"
    # How micro-batches are formed: "pairs" (batch_size pairs, two sequences each, as the paper) or "groups"
    # (batch_size (source, instruction) groups: each candidate forwarded once and every training pair among a
    # group's candidates in the loss, as InstructGPT did with its K-choose-2 comparisons; several times the pairs
    # per forward). Validation always scores pairs.
    batching: Literal["pairs", "groups"] = "pairs"
    # Workers of the torch DataLoader that decodes images (0 = in the training process).
    num_workers: int = 0


@dataclass
class RewardOptimConfig:
    """Optimisation, schedule, budget, evaluation and checkpoint cadence."""

    # Peak learning rate of AdamW. The paper uses 2e-6 for a 7B backbone; a tiny model trained from scratch wants ~1e-3.
    lr: float = 2e-6
    # Learning rate of the reward heads; None = the same as `lr`.
    head_lr: float | None = None
    # AdamW weight decay.
    weight_decay: float = 0.0
    # AdamW betas.
    betas: tuple[float, float] = (0.9, 0.999)
    # Share of the optimiser steps spent warming the learning rate up linearly from 0.
    warmup_ratio: float = 0.05
    # Learning-rate schedule after warm-up (transformers.get_scheduler names).
    schedule: Literal["cosine", "constant_with_warmup", "linear"] = "cosine"
    # Pairs per micro-batch on each process (each pair is two sequences: one forward of 2*batch_size sequences);
    # with data.batching = "groups", groups per micro-batch (one sequence per candidate).
    batch_size: int = 8
    # Micro-batches accumulated per optimiser step.
    grad_accum: int = 1
    # Total optimiser steps; None = derived from `epochs`.
    max_steps: int | None = None
    # Passes over the training pairs when `max_steps` is None.
    epochs: float = 2.0
    # Stop (and save) after this many minutes of training even if steps remain; None = no limit.
    time_budget_minutes: float | None = None
    # Clip the global gradient norm to this value (0 disables clipping).
    max_grad_norm: float = 1.0
    # Log training metrics every this many optimiser steps.
    log_every: int = 10
    # Validation accuracy every this many optimiser steps (0 = only at the end).
    eval_every: int = 200
    # Resumable checkpoint every this many optimiser steps (0 = only at the end).
    save_every: int = 0
    # Resumable checkpoints kept in out_dir/checkpoints (the newest complete ones; older ones are deleted as new
    # ones are committed); 0 = keep all. Two, so that a torn newest checkpoint still leaves one to resume from.
    keep_checkpoints: int = 2
    # Seed of initialisation, data order (seed, epoch) and dropout.
    seed: int = 0
    # bf16 mixed precision on GPU (ignored on CPU, where training runs in fp32).
    bf16: bool = True
    # Path of a DeepSpeed JSON config (e.g. configs/reward/deepspeed_zero2.json for 7B backbones); None = plain DDP/CPU.
    deepspeed: str | None = None
    # Torch intra-op threads on CPU; None = the CLI's default, the cores not busy at start (editrl/threads.py).
    num_threads: int | None = None


@dataclass
class RewardTrainConfig:
    """A whole reward-model training run."""

    # The reward model: backbone, image area, prompt, heads, aggregation, gradient checkpointing,
    # freeze-vision / LoRA (reward/model/config.py); saved inside every checkpoint.
    model: RewardModelConfig = field(default_factory=RewardModelConfig)
    # Preference data and objective.
    data: RewardDataConfig = field(default_factory=RewardDataConfig)
    # Optimisation, budget and cadence.
    train: RewardOptimConfig = field(default_factory=RewardOptimConfig)
    # Output folder: config.yaml, metrics.jsonl, checkpoints/, final/ (the model), training_curve.png.
    out_dir: str = "runs/reward"
    # Resume from this checkpoint folder (a `checkpoints/step_XXXXXX` of an earlier run); "auto" = the newest
    # complete one in out_dir that loads (torn or unreadable ones are skipped with a warning). Refused, naming what
    # changed, when the pair files, checkpoints or a training setting differ from the run that wrote it (its
    # fingerprint.json); leave it unset to start over.
    resume: str | None = None
    # Start from the weights of this reward checkpoint (a `final/` or shipped folder, safetensors) instead of a fresh
    # model: fine-tuning, e.g. on a policy's own samples. Its reward_config.yaml must equal the `model` section in
    # every architecture field (a mismatch is an error naming the fields); optimiser and schedule start fresh.
    init_from: str | None = None
    # wandb project to mirror metrics to; None = JSONL only.
    wandb_project: str | None = None


__all__ = ["RewardDataConfig", "RewardOptimConfig", "RewardTrainConfig"]
