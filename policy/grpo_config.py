"""Configuration of online RL for editors: GRPO (``GRPOConfig``) and online / offline DPO (``DPOConfig``).

Both share the editor, reward, data, sampling, evaluation and logging sections; they differ in their
``train`` section. Defaults follow DESIGN.md "Online RL" (Flow-GRPO for FLUX-sized editors); the editworld
preset (``configs/policy/editworld-grpo.yaml``) shrinks groups, steps and beta for the tiny editor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class EditorSection:
    """Which editor is trained and how its LoRA adapter looks."""

    spec: str = "editworld-tiny"  # rollout.registry spec: "editworld-tiny", "flux-kontext:/dir", "qwen-image-edit:/dir", or a folder
    load_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the adapter's from_pretrained (dtype, device, max_sequence_length, ...)
    lora_rank: int = 32  # LoRA rank r (DESIGN.md: 32)
    lora_alpha: int = 64  # LoRA alpha (DESIGN.md: 64)
    lora_targets: list[str] | None = None  # module names the adapter wraps (None: the editor's default targets)
    train_lora_only: bool = True  # train only the LoRA parameters (False: also every base parameter that requires grad)


@dataclass
class RewardSection:
    """How a batch of edits becomes one scalar reward per edit (policy/rewards.py)."""

    client: str = "reward/weights/editworld-tiny"  # reward checkpoint folder (in-process) or "ray://NAME[@ADDRESS]"
    device: str | None = None  # torch device of an in-process reward model (None: CPU / where it loads)
    function: str = "editreward"  # a name in policy.rewards.REWARD_FUNCTIONS: editreward, dimension, uncertainty, oracle, mix
    dimension: str = "instruction_following"  # scored dimension for "dimension" / "oracle" ("mean": average of dimensions)
    k: float = 1.0  # "uncertainty": reward = mu - k * sigma
    mix: dict[str, float] = field(default_factory=dict)  # "mix": {function name: weight}, e.g. {editreward: 1.0, oracle: 0.5}
    log_oracle: bool = True  # on the editworld, log the oracle scores of training samples beside the learned reward


@dataclass
class DataSection:
    """Where (source, instruction) prompts come from."""

    kind: Literal["editworld", "manifest"] = "editworld"  # procedural editworld tasks, or a manifest.jsonl of real prompts
    manifest: str | None = None  # kind=manifest: JSONL with "source" (image path, relative to the file) and "instruction"
    num_tasks: int = 512  # kind=editworld: size of the training task pool (seeded, disjoint from held-out tasks)
    seed: int = 0  # kind=editworld: task pool seed
    image_size: int = 32  # kind=editworld: rendered image side in pixels
    prompts_per_step: int = 4  # (source, instruction) prompts per step; each yields one group of edits


@dataclass
class SamplingSection:
    """How groups of edits are sampled (SDE with log-probabilities)."""

    group_size: int = 16  # G edits per prompt (DESIGN.md: 12-24)
    num_steps: int = 10  # SDE denoising steps T in training (DESIGN.md: 10)
    noise_level: float = 0.7  # SDE noise level a (std_t = a * sqrt(s / (1 - s)))
    guidance: float | None = None  # editor guidance (None: the editor's default)
    # > 0: only this many consecutive steps are SDE steps, the rest ODE (Flow-GRPO-Fast / MixGRPO), the window
    # starting at a step drawn per RL step from the first half of the schedule; only its steps are trained.
    # The samples then stay close to the ODE samples the editor is evaluated with. 0: every step is SDE.
    sde_window: int = 0
    # True: the G edits of a prompt start from one noise draw, so only the SDE steps (the trained actions) make them
    # differ and every reward difference is credited to them; with a window, the initial noise would otherwise
    # explain most of a group's spread. False: independent draws (Flow-GRPO).
    shared_initial_noise: bool = False
    prompts_per_chunk: int = 2  # prompts sampled per chunk; chunk k is scored while chunk k+1 is sampled


@dataclass
class GRPOTrainSection:
    """The GRPO update."""

    learning_rate: float = 3e-4  # AdamW lr of the LoRA parameters (DESIGN.md: 3e-4)
    weight_decay: float = 1e-4  # AdamW weight decay
    adam_betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    clip_range: float = 1e-4  # ratio clip c (DESIGN.md: 1e-4)
    adv_clip: float = 5.0  # advantages clipped to +-adv_clip (DESIGN.md: 5)
    beta: float = 0.04  # KL weight to the adapter-disabled reference (DESIGN.md: 0-0.04); 0 skips the reference pass
    global_std: bool = False  # normalise advantages by the whole batch's std instead of the group's
    per_prompt_stats: bool = False  # advantages from each prompt's reward history across steps (Flow-GRPO stat tracker)
    stats_history: int = 64  # per_prompt_stats: rewards kept per prompt
    inner_epochs: int = 1  # passes over the step's samples
    timestep_fraction: float = 1.0  # share of the T steps trained per sample (a random subset per sample and epoch)
    micro_batch: int = 8  # samples per forward/backward
    grad_accum: int = 1  # micro-batches per optimiser step
    max_grad_norm: float = 1.0  # gradient clipping (<= 0: off)
    adv_eps: float = 1e-4  # epsilon in (r - mean) / (std + eps)
    # How the advantages train the policy. "clipped": Flow-GRPO's clipped ratio surrogate through the SDE steps'
    # log-probabilities (clip_range, beta, timestep_fraction apply). "group_dpo": DGPO — each group's flow-matching
    # errors on its final edits, weighted by the advantages, inside one DPO sigmoid against the adapter-disabled
    # reference (policy.dpo.group_dpo_loss; dpo_beta and timesteps_per_group apply; micro_batch counts samples, whole
    # groups at a time). It trains on the forward process, not on the SDE steps, as the DPO loop does.
    policy_loss: Literal["clipped", "group_dpo"] = "clipped"
    dpo_beta: float = 2000.0  # policy_loss=group_dpo: the DPO beta (as DPOTrainSection.beta)
    timesteps_per_group: int = 2  # policy_loss=group_dpo: shared (noise, t) draws per group and epoch


@dataclass
class DPOTrainSection:
    """The flow-matching DPO update (pairs: best and worst of each reward-ranked group)."""

    learning_rate: float = 1e-4  # AdamW lr of the LoRA parameters
    weight_decay: float = 1e-4  # AdamW weight decay
    adam_betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    beta: float = 2000.0  # DPO beta (the flow-matching error difference is small, so beta is large, as in Diffusion-DPO)
    reference: Literal["fixed", "online"] = "fixed"  # fixed: adapter disabled; online: a LoRA snapshot refreshed every N steps
    refresh_every: int = 10  # online reference: steps between snapshots of the current LoRA weights
    min_reward_gap: float = 0.0  # skip pairs whose best - worst reward is not above this
    pairs_per_group: int = 1  # k: the i-th best vs the i-th worst edit of each group for i < k (1: best vs worst)
    timesteps_per_pair: int = 2  # shared (noise, t) draws per pair and epoch
    inner_epochs: int = 1  # passes over the step's pairs
    micro_batch: int = 8  # pairs per forward/backward
    max_grad_norm: float = 1.0  # gradient clipping (<= 0: off)


@dataclass
class EvalSection:
    """Held-out evaluation: ODE sampling on editworld tasks the policy never trains on, scored by the oracle."""

    every: int = 10  # steps between evaluations (0: only at start and end); also run before step 1 and after the last
    num_tasks: int = 32  # held-out editworld tasks (seed editworld.tasks.HELD_OUT_SEED)
    num_steps: int = 10  # ODE steps
    batch_size: int = 16  # edits per sampling call
    learned_reward: bool = True  # also score the held-out edits with the learned reward (shows reward hacking)


@dataclass
class GRPOConfig:
    """An online GRPO run."""

    out: str = "runs/grpo"  # output folder: config.yaml, metrics.jsonl, checkpoints/, curves.png
    seed: int = 0  # seeds sampling, shuffling and LoRA init; every step derives its own generators from (seed, step)
    steps: int = 100  # optimiser iterations (sample -> score -> update)
    resume: bool = True  # continue from the latest checkpoint in out/checkpoints when there is one
    checkpoint_every: int = 10  # steps between checkpoints (the last step is always saved)
    keep_checkpoints: int = 2  # newest checkpoints kept
    threads: int | None = None  # torch CPU threads (None: leave as is)
    accelerate: bool = True  # use an accelerate Accelerator (multi-process gradient all-reduce, device placement)
    wandb_project: str | None = None  # mirror metrics to wandb
    editor: EditorSection = field(default_factory=EditorSection)
    reward: RewardSection = field(default_factory=RewardSection)
    data: DataSection = field(default_factory=DataSection)
    sampling: SamplingSection = field(default_factory=SamplingSection)
    train: GRPOTrainSection = field(default_factory=GRPOTrainSection)
    eval: EvalSection = field(default_factory=EvalSection)


@dataclass
class DPOConfig:
    """An online (or offline-reference) DPO run."""

    out: str = "runs/dpo"  # output folder: config.yaml, metrics.jsonl, checkpoints/, curves.png
    seed: int = 0  # seeds sampling, shuffling and LoRA init
    steps: int = 100  # iterations (sample -> score -> pair -> update)
    resume: bool = True  # continue from the latest checkpoint in out/checkpoints when there is one
    checkpoint_every: int = 10  # steps between checkpoints (the last step is always saved)
    keep_checkpoints: int = 2  # newest checkpoints kept
    threads: int | None = None  # torch CPU threads (None: leave as is)
    accelerate: bool = True  # use an accelerate Accelerator (multi-process gradient all-reduce, device placement)
    wandb_project: str | None = None  # mirror metrics to wandb
    editor: EditorSection = field(default_factory=EditorSection)
    reward: RewardSection = field(default_factory=RewardSection)
    data: DataSection = field(default_factory=DataSection)
    sampling: SamplingSection = field(default_factory=SamplingSection)
    train: DPOTrainSection = field(default_factory=DPOTrainSection)
    eval: EvalSection = field(default_factory=EvalSection)


__all__ = ["EditorSection", "RewardSection", "DataSection", "SamplingSection", "GRPOTrainSection",
           "DPOTrainSection", "EvalSection", "GRPOConfig", "DPOConfig"]
