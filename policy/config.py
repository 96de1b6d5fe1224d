"""Configuration of online RL for editors: GRPO (``GRPOConfig``) and online / offline DPO (``DPOConfig``).

Both extend ``RLConfig`` (editor, reward, data, sampling, evaluation, checkpoints, logging) and differ only in
their ``train`` section, which extends ``TrainSection`` (optimiser, micro-batching, clipping). GRPO's update is
chosen by ``train.policy_loss`` (default ``group_dpo``, DGPO, what the shipped presets run); each loss keeps its
own settings in its own sub-section (``train.group_dpo``, ``train.nft``, ``train.clipped``), and setting the sub-section of a
loss that is not selected is an error (``validate_rl_config``). Defaults are sized for FLUX-class editors on GPUs
(group 16, 10 SDE steps, LoRA r 32); ``configs/policy/editworld-*.yaml`` shrink them for the tiny editor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass
class EditorSection:
    """Which editor is trained and how its LoRA adapter looks."""

    spec: str = "editworld-tiny"  # rollout.registry spec: "editworld-tiny", "flux-kontext:/dir", "qwen-image-edit:/dir", or a folder
    load_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the adapter's from_pretrained (dtype, device, max_sequence_length, ...)
    lora_rank: int = 32  # LoRA rank r 
    lora_alpha: int = 64  # LoRA alpha 
    lora_targets: list[str] | None = None  # module names the adapter wraps (None: the editor's default targets)
    train_lora_only: bool = True  # train only the LoRA parameters (False: also every base parameter that requires grad)


@dataclass
class RewardSection:
    """How a batch of edits becomes one scalar reward per edit (policy/rewards.py)."""

    client: str = "reward/weights/editworld-tiny"  # reward checkpoint folder (in-process), "ray://NAME[@ADDRESS]", or "ensemble:A,B,..." of those
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

    group_size: int = 16  # G edits per prompt
    num_steps: int = 10  # SDE denoising steps T in training
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
class TrainSection:
    """What every RL update shares: the AdamW optimiser over the trained (LoRA) parameters and micro-batching."""

    learning_rate: float = 3e-4  # AdamW lr of the LoRA parameters
    weight_decay: float = 1e-4  # AdamW weight decay
    adam_betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    inner_epochs: int = 1  # passes over the step's samples (GRPO) or pairs (DPO)
    micro_batch: int = 8  # samples (GRPO; whole groups at a time for group_dpo) or pairs (DPO) per forward/backward
    grad_accum: int = 1  # micro-batches per optimiser step
    max_grad_norm: float = 1.0  # gradient clipping (<= 0: off)


@dataclass
class ClippedLossSection:
    """``policy_loss=clipped``: Flow-GRPO's clipped ratio surrogate through the recorded SDE steps."""

    clip_range: float = 1e-4  # ratio clip c
    adv_clip: float = 5.0  # advantages clipped to +-adv_clip
    beta: float = 0.04  # KL weight to the adapter-disabled reference (0 skips the reference pass)
    timestep_fraction: float = 1.0  # share of the SDE steps trained per micro-batch (a random subset)


@dataclass
class GroupDPOLossSection:
    """``policy_loss=group_dpo``: DGPO — a group's flow-matching errors on its final edits, weighted by the
    advantages, inside one DPO sigmoid against the adapter-disabled reference (``policy.losses.group_dpo_loss``)."""

    beta: float = 2000.0  # the DPO beta (flow-matching error differences are small, so beta is large)
    timesteps_per_group: int = 2  # shared (noise, t) draws per group and epoch


@dataclass
class NFTLossSection:
    """``policy_loss=nft``: DiffusionNFT — the step's final edits, noised afresh, train an implicit positive and
    negative policy mixed from the trained and the sampling policy's velocities (``policy.losses.nft_loss``); no
    log-probabilities, so the edits may come from the ODE sampler (``sampling.noise_level=0``)."""

    beta: float = 1.0  # mixing strength of the implicit policies (1: v+ is the trained policy itself)
    adv_clip: float = 5.0  # advantages clipped to +-adv_clip, then mapped to an optimality r in [0, 1]
    timesteps_per_sample: int = 4  # noise levels t per edit and epoch, stratified over [t_min, t_max]
    t_min: float = 0.0  # lowest trained noise level
    t_max: float = 1.0  # highest trained noise level
    kl_beta: float = 0.0  # weight of mean (v - v_ref)^2 to the adapter-disabled reference (0 skips the reference)


@dataclass
class GRPOTrainSection(TrainSection):
    """The GRPO update: rewards become group-relative advantages, which train the policy through ``policy_loss``."""

    # A name in policy.updates.UPDATES: "group_dpo" (DGPO, trains on the forward process like DPO), "nft"
    # (DiffusionNFT, forward process, no log-probabilities) or "clipped" (Flow-GRPO's clipped surrogate through the
    # SDE steps' log-probabilities).
    policy_loss: Literal["group_dpo", "nft", "clipped"] = "group_dpo"
    # A name in policy.advantages.ADVANTAGES: "group" (z-score within each group), "global_std" (group mean,
    # batch std), "per_prompt" (against each prompt's reward history across steps, Flow-GRPO's stat tracker)
    advantage: Literal["group", "global_std", "per_prompt"] = "group"
    adv_eps: float = 1e-4  # epsilon in (r - mean) / (std + eps)
    stats_history: int = 64  # advantage=per_prompt: rewards kept per prompt
    group_dpo: GroupDPOLossSection = field(default_factory=GroupDPOLossSection)
    clipped: ClippedLossSection = field(default_factory=ClippedLossSection)
    nft: NFTLossSection = field(default_factory=NFTLossSection)


@dataclass
class DPOTrainSection(TrainSection):
    """The flow-matching DPO update: rewards become (best, worst) pairs of each reward-ranked group."""

    learning_rate: float = 1e-4  # AdamW lr of the LoRA parameters
    beta: float = 2000.0  # DPO beta (the flow-matching error difference is small, so beta is large, as in Diffusion-DPO)
    reference: Literal["fixed", "online"] = "fixed"  # fixed: adapter disabled; online: a LoRA snapshot refreshed every N steps
    refresh_every: int = 10  # online reference: steps between snapshots of the current LoRA weights
    min_reward_gap: float = 0.0  # skip pairs whose best - worst reward is not above this
    pairs_per_group: int = 1  # k: the i-th best vs the i-th worst edit of each group for i < k (1: best vs worst)
    timesteps_per_pair: int = 2  # shared (noise, t) draws per pair and epoch


@dataclass
class EvalSection:
    """Held-out evaluation: ODE sampling on editworld tasks the policy never trains on, scored by the oracle."""

    every: int = 10  # steps between evaluations (0: only at start and end); also run before step 1 and after the last
    num_tasks: int = 32  # held-out editworld tasks (seed editworld.tasks.HELD_OUT_SEED)
    num_steps: int = 10  # ODE steps
    batch_size: int = 16  # edits per sampling call
    learned_reward: bool = True  # also score the held-out edits with the learned reward (shows reward hacking)
    guard_reward: str = ""  # a second reward spec, independent of reward.client, scoring the held-out edits (eval/guard)
    guard_patience: int = 0  # > 0: stop after this many evaluations without a new best eval/guard (0: only log it)


@dataclass
class RLConfig:
    """What a GRPO and a DPO run share."""

    out: str = "runs/rl"  # output folder: config.yaml, metrics.jsonl, checkpoints/, eval/
    seed: int = 0  # seeds sampling, shuffling and LoRA init; every step derives its own generators from (seed, step)
    steps: int = 100  # optimiser iterations (sample -> score -> update)
    # continue from the latest complete checkpoint in out/checkpoints when there is one; refused, naming what changed,
    # when the editor, reward checkpoint, manifest or a training setting differs (out/fingerprint.json); false: start over
    resume: bool = True
    checkpoint_every: int = 10  # steps between checkpoints (the last step is always saved)
    keep_checkpoints: int = 2  # newest checkpoints kept
    threads: int | None = None  # torch CPU threads (None: the CLI's default, the cores not busy at start: editrl/threads.py)
    accelerate: bool = True  # use an accelerate Accelerator (multi-process gradient all-reduce, device placement)
    wandb_project: str | None = None  # mirror metrics to wandb
    editor: EditorSection = field(default_factory=EditorSection)
    reward: RewardSection = field(default_factory=RewardSection)
    data: DataSection = field(default_factory=DataSection)
    sampling: SamplingSection = field(default_factory=SamplingSection)
    eval: EvalSection = field(default_factory=EvalSection)


@dataclass
class GRPOConfig(RLConfig):
    """An online GRPO run (``editrl policy grpo``)."""

    out: str = "runs/grpo"  # output folder: config.yaml, metrics.jsonl, checkpoints/, eval/
    train: GRPOTrainSection = field(default_factory=GRPOTrainSection)


@dataclass
class DPOConfig(RLConfig):
    """An online (or fixed-reference) DPO run (``editrl policy dpo``)."""

    out: str = "runs/dpo"  # output folder: config.yaml, metrics.jsonl, checkpoints/, eval/
    train: DPOTrainSection = field(default_factory=DPOTrainSection)


def validate_rl_config(cfg: RLConfig) -> None:
    """Range checks, and no setting the chosen loss ignores; raises ``editrl.config.ConfigError`` naming the key."""
    from editrl.config import ConfigError

    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"{key}: {what}")

    need(cfg.steps >= 1, "steps", f"must be >= 1, got {cfg.steps}")
    need(cfg.sampling.group_size >= 2, "sampling.group_size",
         f"must be >= 2 (a group of one has no relative advantage), got {cfg.sampling.group_size}")
    need(cfg.data.prompts_per_step >= 1, "data.prompts_per_step", f"must be >= 1, got {cfg.data.prompts_per_step}")
    need(cfg.sampling.num_steps >= 1, "sampling.num_steps", f"must be >= 1, got {cfg.sampling.num_steps}")
    need(cfg.train.micro_batch >= 1, "train.micro_batch", f"must be >= 1, got {cfg.train.micro_batch}")
    need(cfg.train.grad_accum >= 1, "train.grad_accum", f"must be >= 1, got {cfg.train.grad_accum}")
    need(cfg.train.inner_epochs >= 1, "train.inner_epochs", f"must be >= 1, got {cfg.train.inner_epochs}")
    ev = cfg.eval
    need(ev.guard_patience >= 0, "eval.guard_patience", f"must be >= 0, got {ev.guard_patience}")
    need(not ev.guard_patience or bool(ev.guard_reward), "eval.guard_patience",
         "needs eval.guard_reward (the independent reward whose held-out score it watches)")
    need(not ev.guard_reward or ev.num_tasks > 0, "eval.guard_reward", "needs eval.num_tasks > 0 (held-out edits to score)")
    need(ev.guard_reward.strip() != cfg.reward.client.strip(), "eval.guard_reward",
         f"is the training reward itself ({cfg.reward.client!r}); a guard needs a reward the policy is not trained on")
    if isinstance(cfg.train, GRPOTrainSection):
        for name, section_cls in (("group_dpo", GroupDPOLossSection), ("clipped", ClippedLossSection),
                                  ("nft", NFTLossSection)):
            if name != cfg.train.policy_loss and getattr(cfg.train, name) != section_cls():
                raise ConfigError(f"train.{name}: set, but train.policy_loss={cfg.train.policy_loss} ignores it "
                                  f"(remove it or set train.policy_loss={name})")
        c = cfg.train.clipped
        need(0 < c.timestep_fraction <= 1, "train.clipped.timestep_fraction",
             f"must be in (0, 1], got {c.timestep_fraction}")
        n = cfg.train.nft
        need(n.beta > 0, "train.nft.beta", f"must be > 0, got {n.beta}")
        need(n.adv_clip > 0, "train.nft.adv_clip", f"must be > 0, got {n.adv_clip}")
        need(n.timesteps_per_sample >= 1, "train.nft.timesteps_per_sample",
             f"must be >= 1, got {n.timesteps_per_sample}")
        need(0 <= n.t_min < n.t_max <= 1, "train.nft.t_min",
             f"need 0 <= t_min < t_max <= 1, got t_min={n.t_min}, t_max={n.t_max}")
        need(n.kl_beta >= 0, "train.nft.kl_beta", f"must be >= 0, got {n.kl_beta}")
        if cfg.train.policy_loss == "clipped":
            need(cfg.sampling.noise_level > 0, "sampling.noise_level",
                 "must be > 0 for train.policy_loss=clipped (ODE steps have no log-probability to train)")


# Settings a resumed run may change: the length, cadence, evaluation and logging, not what the weights learn from.
RESUMABLE_CHANGES = ("out", "steps", "resume", "checkpoint_every", "keep_checkpoints", "threads", "accelerate",
                     "wandb_project", "eval", "reward.device", "reward.log_oracle", "editor.load_kwargs.device")


def run_fingerprint(cfg: RLConfig, reward_client: Any = None) -> dict[str, Any]:
    """What a run's checkpoints depend on (editrl.fingerprint): the editor's weights, the reward checkpoint, the
    prompt manifest, and every setting except ``RESUMABLE_CHANGES``."""
    from editrl.config import config_to_dict
    from editrl.fingerprint import flatten, make_fingerprint
    from policy.rewards import needs_client
    from rollout.registry import parse_spec, shipped_tiny_dir

    settings = {k: v for k, v in flatten(config_to_dict(cfg)).items()
                if not any(k == free or k.startswith(free + ".") for free in RESUMABLE_CHANGES)}
    kind, editor_path = parse_spec(cfg.editor.spec)
    if reward_client is not None:
        settings["reward.client"] = f"client:{type(reward_client).__module__}.{type(reward_client).__qualname__}"
    from reward.serve.ensemble import member_specs

    uses_reward = reward_client is None and needs_client(cfg.reward)
    rewards = member_specs(cfg.reward.client) if uses_reward else []
    files = {"editor": editor_path or (shipped_tiny_dir() if kind == "tiny" else None),
             "prompt manifest": cfg.data.manifest if cfg.data.kind == "manifest" else None}
    # an ensemble's members are each an input, so a member's changed weights are caught on resume
    files.update({"reward checkpoint" + (f" {i + 1}" if len(rewards) > 1 else ""): r for i, r in enumerate(rewards)})
    return make_fingerprint(files, settings)


def check_run_inputs(cfg: RLConfig, out: Any, store: Any, reward_client: Any = None,
                     write: bool = True) -> None:
    """Refuse to resume ``out`` when its checkpoints were trained on other inputs (a ConfigError naming them);
    then store this run's fingerprint (``write``: the main process)."""
    from editrl.fingerprint import check_resume, read_fingerprint, write_fingerprint

    fingerprint = run_fingerprint(cfg, reward_client)
    if cfg.resume and store.complete():
        for note in check_resume(read_fingerprint(out), fingerprint, f"{out} holds checkpoints",
                                 f"Rerun with resume=false to train from scratch in {out} (its checkpoints are "
                                 "replaced as new ones are written), or with another out=."):
            print(note)
    if write:
        write_fingerprint(out, fingerprint)


def load_run_config(run_dir: str | Path) -> GRPOConfig | DPOConfig:
    """The config an RL run saved (``run_dir/config.yaml``), as the GRPO or DPO config it is."""
    from editrl.config import ConfigError, load_config
    from editrl.io import DataError

    cfg_path = Path(run_dir) / "config.yaml"
    if not cfg_path.is_file():
        raise DataError(cfg_path, "missing: not an RL run folder")
    errors = []
    for config_cls in (GRPOConfig, DPOConfig):
        try:
            return load_config(config_cls, cfg_path)
        except ConfigError as err:
            errors.append(f"as {config_cls.__name__}: {err}")
    raise DataError(cfg_path, "not a GRPO or DPO run config (" + "; ".join(errors) + ")")


__all__ = ["EditorSection", "RewardSection", "DataSection", "SamplingSection", "TrainSection", "ClippedLossSection",
           "GroupDPOLossSection", "NFTLossSection", "GRPOTrainSection", "DPOTrainSection", "EvalSection", "RLConfig", "GRPOConfig",
           "DPOConfig", "validate_rl_config", "RESUMABLE_CHANGES", "run_fingerprint",
           "check_run_inputs", "load_run_config"]
