"""Config of ``editrl policy sft``: flow-matching supervised fine-tuning of an editor on (source, instruction, target)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rollout.tiny_editor import TinyEditorConfig


@dataclass
class SFTEditorSection:
    spec: str = "new-tiny"  # "new-tiny": a fresh tiny editor sized by `tiny`; else an editor spec / local folder
    tiny: TinyEditorConfig = field(default_factory=TinyEditorConfig)  # sizes of a fresh tiny editor
    load_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the editor's from_pretrained (dtype, ...)


@dataclass
class SFTDataSection:
    source: str = "editworld"  # "editworld" (fresh tasks generated on the fly) or a manifest.jsonl path
    seed: int = 0  # seed of the editworld training stream (disjoint from editworld.tasks.HELD_OUT_SEED)
    image_size: int = 32  # editworld render size


@dataclass
class SFTTrainSection:
    batch_size: int = 32  # (source, instruction, target) rows per optimiser step
    learning_rate: float = 1.0e-3  # AdamW peak learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    adam_betas: tuple[float, float] = (0.9, 0.99)  # AdamW betas
    warmup_steps: int = 50  # linear warm-up from 0
    schedule: Literal["constant", "cosine"] = "cosine"  # after warm-up; cosine decays to min_lr_ratio at max_steps
    min_lr_ratio: float = 0.1  # floor of the cosine schedule (fraction of the peak)
    max_steps: int = 2000  # optimiser steps (the run also stops at time_budget_minutes)
    time_budget_minutes: float = 0.0  # wall-clock stop (0 = none); a resumed run gets a fresh budget
    max_grad_norm: float = 1.0  # gradient clipping (0 = off)
    ema_decay: float = 0.0  # EMA of the weights saved as the final editor (0 = off)
    timestep_sampling: Literal["uniform", "logit_normal"] = "uniform"  # density of sigma before the shift
    threads: int = 0  # torch CPU threads (0 = leave torch's default)


@dataclass
class SFTEvalSection:
    num_tasks: int = 64  # held-out editworld tasks scored by the oracle at the end (0 = skip)
    num_steps: int = 10  # ODE steps
    batch_size: int = 32  # edits per sampling call of the held-out evaluation


@dataclass
class SFTConfig:
    """A flow-matching SFT run (``editrl policy sft``)."""

    out: str = "runs/editworld-sft"  # output folder; rerun the same command to resume
    seed: int = 0  # model init, noise and timesteps
    log_every: int = 10  # steps between metrics rows
    checkpoint_every: int = 100  # steps between resumable checkpoints
    keep_checkpoints: int = 2  # newest checkpoints kept
    save_to: str | None = None  # also write the final editor here (e.g. rollout/weights/editworld-tiny)
    wandb_project: str | None = None  # mirror metrics to wandb when set
    progress: bool = True  # tqdm bar
    editor: SFTEditorSection = field(default_factory=SFTEditorSection)  # which editor is trained
    data: SFTDataSection = field(default_factory=SFTDataSection)  # where (source, instruction, target) rows come from
    train: SFTTrainSection = field(default_factory=SFTTrainSection)  # optimiser, schedule, sigma sampling
    eval: SFTEvalSection = field(default_factory=SFTEvalSection)  # held-out oracle evaluation of the final editor
