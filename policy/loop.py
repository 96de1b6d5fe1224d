# long: the online RL loop reads top to bottom in labelled stages (setup, sample, reward, update, evaluate, save)
"""The online RL loop shared by GRPO and DPO, read top to bottom in labelled stages.

One iteration of ``train(cfg, algorithm)``::

    SAMPLE + SCORE  G SDE edits per prompt (policy.rollouts.sample_groups); chunk k is scored while k+1 samples
    TARGETS         the algorithm turns rewards into what its update trains on: GRPO advantages (policy.advantages),
                    DPO (best, worst) pairs
    UPDATE          policy.updates.UPDATES[algorithm.update] — group_dpo (DGPO), nft (DiffusionNFT), clipped (Flow-GRPO), flow_dpo
    LOG             learned reward (per dimension), editworld oracle, update statistics, seconds per stage
    EVAL            held-out ODE edits scored by the oracle (policy.evaluate), every ``eval.every`` steps; an
                    independent guard reward keeps its best policy and may stop the run (policy.guard)
    CHECKPOINT      LoRA weights + adapter.json, optimiser, RNG, the algorithm's state (editrl.checkpoint)

Every step draws its randomness from generators seeded by (seed, step), and a checkpoint holds everything else
that evolves, so a resumed run continues the same curve. ``policy/grpo.py`` and ``policy/dpo.py`` define the two
algorithms; everything else lives here.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch

from editrl.checkpoint import (CheckpointStore, load_tensors, optimizer_from_tensors, optimizer_tensors, read_state,
                               restore_rng, rng_state)
from policy.advantages import zero_advantage_fraction
from policy.config import GRPOConfig, RLConfig, check_run_inputs, validate_rl_config
from policy.evaluate import evaluate_held_out
from policy.guard import GUARD_DIR, GUARD_KEY, GuardState, save_guard_best
from policy.rollouts import (Prompt, PromptPool, Rollout, fill_failed_rewards, held_out_prompts, sample_groups,
                             step_generator)
from policy.updates import UPDATES
from rollout.adapters import AdapterManifest, attach_adapter, denoiser, editor_device, load_adapter_weights


class Algorithm(Protocol):
    """What differs between GRPO and DPO: how rewards become targets, which update trains on them, and state."""

    update: str  # a key of policy.updates.UPDATES
    prefix: str  # metric prefix of the update's statistics

    def targets(self, rollout: Rollout, rewards: torch.Tensor, keys: list[str]) -> tuple[Any, dict[str, float]]:
        """``(targets or None to skip the update, metrics)``."""

    def reference(self) -> Callable | None:
        """A context manager running the reference model, or None (the adapter disabled)."""

    def after_update(self, step: int) -> None: ...

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """What a checkpoint keeps: (JSON state, tensors)."""

    def load_state(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None: ...


# ====================================================================================== set-up
def load_policy(cfg: RLConfig, accelerator: Any = None) -> tuple[Any, list[tuple[str, torch.nn.Parameter]]]:
    """Load the editor and attach its LoRA adapter (seeded): ``(editor, [(name, trained param), ...])``."""
    from rollout.registry import load_editor

    kwargs = dict(cfg.editor.load_kwargs)
    if accelerator is not None and "device" not in kwargs and accelerator.device.type != "cpu":
        kwargs["device"] = str(accelerator.device)
    editor = load_editor(cfg.editor.spec, **kwargs)
    named = attach_adapter(editor, cfg.editor.lora_rank, cfg.editor.lora_alpha, cfg.editor.lora_targets,
                           cfg.editor.train_lora_only, cfg.seed)
    return editor, named


def make_accelerator(enabled: bool) -> Any:
    """An accelerate Accelerator (multi-process runs via `accelerate launch`), or None."""
    if not enabled:
        return None
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())


def make_reward(cfg: RLConfig, client: Any = None) -> tuple[Callable, Any]:
    """``(reward function, reward client or None)``: the client is shared with evaluation."""
    from policy.rewards import build_reward_fn, needs_client

    if client is None and (needs_client(cfg.reward) or cfg.eval.learned_reward and cfg.eval.num_tasks > 0):
        from reward.serve.client import make_reward_client

        client = make_reward_client(cfg.reward.client, device=cfg.reward.device)
    return build_reward_fn(cfg.reward, client), client


def algorithm_name(cfg: RLConfig) -> str:
    """``grpo/<policy_loss>`` or ``dpo/flow_dpo``: recorded in every adapter checkpoint."""
    return f"grpo/{cfg.train.policy_loss}" if isinstance(cfg, GRPOConfig) else "dpo/flow_dpo"


# ====================================================================================== checkpoints
def adapter_manifest(cfg: RLConfig, named_params: list) -> AdapterManifest:
    """The adapter.json that makes a checkpoint of this run a loadable editor (``rl:`` specs)."""
    return AdapterManifest(editor=cfg.editor.spec, lora_rank=cfg.editor.lora_rank, lora_alpha=cfg.editor.lora_alpha,
                           lora_targets=cfg.editor.lora_targets, train_lora_only=cfg.editor.train_lora_only,
                           load_kwargs=dict(cfg.editor.load_kwargs), param_names=[n for n, _ in named_params],
                           algorithm=algorithm_name(cfg), seed=cfg.seed)


def save_rl_checkpoint(store: CheckpointStore, cfg: RLConfig, step: int, named_params: list, optimizer: Any,
                       algorithm: Algorithm, guard: GuardState | None = None) -> Path:
    """One checkpoint: lora.safetensors + adapter.json (a loadable editor), optimiser, RNG, the algorithm's and the
    guard's state."""
    opt_tensors, opt_meta = optimizer_tensors(optimizer.state_dict())
    rng_tensors, rng_meta = rng_state()
    algo_state, algo_tensors = algorithm.state()
    manifest = adapter_manifest(cfg, named_params)
    tensors = {"lora.safetensors": dict(named_params), "optimizer.safetensors": opt_tensors,
               "rng.safetensors": rng_tensors}
    if algo_tensors:
        tensors["extra.safetensors"] = algo_tensors
    state = {"optimizer": opt_meta, "rng": rng_meta, "algorithm": algo_state,
             "guard": (guard or GuardState()).state()}
    return store.save(step, state, tensors, write=manifest.write)


def load_rl_checkpoint(path: Path, named_params: list, optimizer: Any) -> tuple[dict[str, Any], dict]:
    """Restore weights, optimiser and RNG from ``path``; returns ``(state, extra tensors)``."""
    state = read_state(path)
    load_adapter_weights(path, named_params)
    optimizer.load_state_dict(optimizer_from_tensors(load_tensors(path / "optimizer.safetensors"), state["optimizer"]))
    restore_rng(load_tensors(path / "rng.safetensors"), state["rng"])
    extra = load_tensors(path / "extra.safetensors") if (path / "extra.safetensors").is_file() else {}
    return state, extra


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop metric rows logged after ``last_step`` (a run that died after its last checkpoint)."""
    if not path.is_file():
        return
    rows = [line for line in path.read_text().splitlines() if line.strip()]
    keep = [line for line in rows if json.loads(line).get("step", -1) <= last_step]
    path.write_text("".join(line + "\n" for line in keep))


# ====================================================================================== the run
@dataclass
class Run:
    """Everything the loop holds between steps."""

    cfg: RLConfig
    out: Path
    editor: Any
    named_params: list[tuple[str, torch.nn.Parameter]]
    optimizer: torch.optim.Optimizer
    reward_fn: Callable
    client: Any
    pool: PromptPool
    held_out: list[Prompt]
    accelerator: Any
    store: CheckpointStore
    guard_client: Any = None
    guard: GuardState = field(default_factory=GuardState)
    start_step: int = 0
    resumed_state: dict[str, Any] = field(default_factory=dict)
    resumed_tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def is_main(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    def evaluate(self, step: int) -> dict[str, float]:
        if not self.held_out:
            return {}
        grid = self.out / "eval" / f"step_{step:06d}.png" if self.is_main else None
        return evaluate_held_out(self.editor, self.held_out, self.cfg.eval, self.cfg.sampling.guidance,
                                 self.cfg.seed, self.client, grid, self.guard_client)


    def observe_guard(self, step: int, row: dict[str, float]) -> None:
        """Feed an evaluation's ``eval/guard`` to the guard; its new best policy is saved as ``<out>/guard-best``."""
        if GUARD_KEY in row and self.guard.observe(step, row[GUARD_KEY]) and self.is_main:
            save_guard_best(self.out, step, row[GUARD_KEY], self.named_params,
                            adapter_manifest(self.cfg, self.named_params).write)


def setup_run(cfg: RLConfig, reward_client: Any = None) -> Run:
    """Output folder, saved config, editor + LoRA, optimiser, reward, prompts; resume from the latest checkpoint
    (refused when the inputs changed since it was written: ``check_run_inputs``)."""
    from editrl.config import save_config

    validate_rl_config(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    accelerator = make_accelerator(cfg.accelerate)
    store = CheckpointStore(out, keep=cfg.keep_checkpoints)
    check_run_inputs(cfg, out, store, reward_client, write=accelerator is None or accelerator.is_main_process)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    editor, named = load_policy(cfg, accelerator)
    t = cfg.train
    optimizer = torch.optim.AdamW([p for _, p in named], lr=t.learning_rate, betas=tuple(t.adam_betas),
                                  weight_decay=t.weight_decay)
    reward_fn, client = make_reward(cfg, reward_client)
    pool = PromptPool(cfg.data, cfg.seed)
    held_out = held_out_prompts(cfg.eval.num_tasks, cfg.data.image_size) if cfg.eval.num_tasks > 0 else []
    guard_client = None
    if cfg.eval.guard_reward:
        from reward.serve.client import make_reward_client

        guard_client = make_reward_client(cfg.eval.guard_reward, device=cfg.reward.device)
    run = Run(cfg, out, editor, named, optimizer, reward_fn, client, pool, held_out, accelerator, store, guard_client)
    loaded = store.load_latest(lambda p: load_rl_checkpoint(p, named, optimizer)) if cfg.resume else None
    if loaded is not None:
        ckpt, (run.resumed_state, run.resumed_tensors) = loaded
        run.start_step = int(run.resumed_state["step"])
        run.guard = GuardState.from_state(run.resumed_state.get("guard"))
        if run.is_main:
            truncate_metrics(out / "metrics.jsonl", run.start_step)
            print(f"resumed from {ckpt} (step {run.start_step})")
    elif run.is_main:  # a fresh run: no stale curve or guard pick
        (out / "metrics.jsonl").unlink(missing_ok=True)
        shutil.rmtree(out / GUARD_DIR, ignore_errors=True)
    if run.is_main:
        save_config(cfg, out / "config.yaml")
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return run


def info_means(info: dict[str, np.ndarray], prefix: str = "reward/") -> dict[str, float]:
    """Mean of every per-item info array (NaN-aware), as metrics."""
    return {f"{prefix}{k}": float(np.nanmean(v)) if np.isfinite(v).any() else math.nan for k, v in info.items()}


def shard(prompts: list[Prompt], chunk: int, accelerator: Any) -> tuple[list[Prompt], int]:
    """This process's contiguous share of the step's prompts and the global index of its first sampling chunk.

    Contiguous shares keep every chunk of ``prompts_per_chunk`` prompts whole, so with per-chunk generators a
    multi-process run samples exactly the edits the one-process run samples (when the shares are whole chunks)."""
    if accelerator is None or accelerator.num_processes == 1:
        return prompts, 0
    world, rank = accelerator.num_processes, accelerator.process_index
    if len(prompts) % world:
        raise ValueError(f"data.prompts_per_step={len(prompts)} must be a multiple of the {world} processes")
    per = len(prompts) // world
    return prompts[rank * per:(rank + 1) * per], (rank * per) // max(1, chunk)


def gather_for_log(accelerator: Any, rewards: torch.Tensor, keys: list[str], info: dict[str, np.ndarray],
                   target_log: dict[str, float], stats: dict[str, float]) -> tuple:
    """Rewards, keys and per-item info of every process, and the processes' mean of the scalar statistics."""
    if accelerator is None or accelerator.num_processes == 1:
        return rewards, keys, info, target_log, stats
    from accelerate.utils import gather_object

    parts = gather_object([(rewards.tolist(), keys, {k: v.tolist() for k, v in info.items()}, target_log, stats)])
    all_rewards = torch.tensor([r for p in parts for r in p[0]])
    all_keys = [k for p in parts for k in p[1]]
    all_info = {k: np.concatenate([np.asarray(p[2][k], dtype=np.float64) for p in parts]) for k in info}
    def combine(dicts: list[dict[str, float]]) -> dict[str, float]:
        return {k: float((np.sum if k in _COUNTS else np.mean)([d[k] for d in dicts if k in d])) for k in dicts[0]}

    return all_rewards, all_keys, all_info, combine([p[3] for p in parts]), combine([p[4] for p in parts]) if stats else {}


_COUNTS = {"trained_groups", "dpo/pairs"}  # summed over processes; every other statistic is averaged


# ====================================================================================== the loop
def train(cfg: RLConfig, make_algorithm: Callable[[RLConfig, Run], Algorithm], reward_client: Any = None
          ) -> dict[str, Any]:
    """Run (or resume) online RL with the algorithm ``make_algorithm(cfg, run)`` builds; returns the last metrics
    row and where things were written."""
    from editrl.config import config_to_dict
    from editrl.metrics import MetricsSink

    run = setup_run(cfg, reward_client)
    algorithm = make_algorithm(cfg, run)
    if run.resumed_state:
        algorithm.load_state(run.resumed_state.get("algorithm", {}), run.resumed_tensors)
    update = UPDATES[algorithm.update]
    device = editor_device(run.editor)
    sink = MetricsSink(run.out, wandb_project=cfg.wandb_project, config=config_to_dict(cfg)) if run.is_main else None
    row: dict[str, Any] = {}
    try:
        if run.start_step == 0 and run.held_out:
            row = run.evaluate(0)
            run.observe_guard(0, row)  # the starting editor can be the guard's best
            if sink:
                sink.log(row, step=0)
        for step in range(run.start_step + 1, cfg.steps + 1):
            t_step = time.perf_counter()
            prompts, first_chunk = shard(run.pool.batch(step), cfg.sampling.prompts_per_chunk, run.accelerator)

            # ---- SAMPLE + SCORE: G SDE edits per prompt; chunk k scored while chunk k+1 samples
            rollout, timings = sample_groups(
                run.editor, run.reward_fn, prompts, cfg.sampling, step_generator(cfg.seed, step, 0, device),
                cfg.reward.log_oracle, chunk_generator=lambda c: step_generator(cfg.seed, step, 1000 + c, device),
                first_chunk=first_chunk)
            keys = rollout.group_keys
            rewards, n_failed = fill_failed_rewards(rollout.rewards, keys)

            # ---- TARGETS: advantages (GRPO) or best-vs-worst pairs (DPO)
            targets, target_log = algorithm.targets(rollout, rewards, keys)

            # ---- UPDATE: policy.updates.UPDATES[algorithm.update]
            t0 = time.perf_counter()
            stats: dict[str, float] = {}
            if targets is not None:
                denoiser(run.editor).train()
                stats = update(run.editor, run.named_params, run.optimizer, rollout, targets, cfg,
                               step_generator(cfg.seed, step, 1), run.accelerator, algorithm.reference())
                denoiser(run.editor).eval()
            algorithm.after_update(step)
            t_update = time.perf_counter() - t0

            # ---- LOG: learned reward per dimension beside the oracle; update statistics, dead groups, timings
            #      (over every process's samples: the row describes the global batch)
            all_rewards, all_keys, info, target_log, stats = gather_for_log(
                run.accelerator, rewards, keys, rollout.info, target_log, stats)
            row = {"reward_mean": float(all_rewards.mean()), "reward_std": float(all_rewards.std(unbiased=False)),
                   "zero_advantage_groups": zero_advantage_fraction(all_rewards, all_keys),
                   "reward_failures": n_failed, **target_log, **{f"{algorithm.prefix}/{k}": v for k, v in stats.items()},
                   **info_means(info), **timings, "time/update": t_update}

            # ---- EVAL: held-out ODE edits, oracle-scored
            if cfg.eval.every > 0 and step % cfg.eval.every == 0 or step == cfg.steps:
                t0 = time.perf_counter()
                row.update(run.evaluate(step))
                row["time/eval"] = time.perf_counter() - t0
            # the independent reward's best policy is kept; with eval.guard_patience the run stops when it stalls
            run.observe_guard(step, row)
            stop = run.guard.exhausted(cfg.eval.guard_patience)
            if stop:
                row["guard/stopped"] = 1.0
            row["time/step"] = time.perf_counter() - t_step
            if sink:
                sink.log(row, step=step)
            if run.is_main:
                print_step(step, cfg.steps, {**row, "train/loss": stats.get("loss", math.nan)})

            # ---- CHECKPOINT: LoRA + adapter.json, optimiser, RNG, the algorithm's state
            if step % max(cfg.checkpoint_every, 1) == 0 or step == cfg.steps or stop:
                if run.is_main:
                    save_rl_checkpoint(run.store, cfg, step, run.named_params, run.optimizer, algorithm, run.guard)
                if run.accelerator is not None:
                    run.accelerator.wait_for_everyone()
            if stop:
                if run.is_main:
                    print(f"guard: {GUARD_KEY} has not passed {run.guard.best:.4f} (step {run.guard.best_step}) for "
                          f"{cfg.eval.guard_patience} evaluations; stopping at step {step}", flush=True)
                break
    finally:
        if sink:
            sink.close()
    return {"out": str(run.out), "metrics": str(run.out / "metrics.jsonl"), "last": row,
            "start_step": run.start_step, "editor": run.editor, "is_main": run.is_main}


def print_step(step: int, steps: int, row: dict[str, Any]) -> None:
    """One line per step: reward, oracle, loss, held-out oracle, seconds."""
    parts = [f"step {step}/{steps}", f"reward {row.get('reward_mean', math.nan):.3f}"]
    if "reward/oracle_instruction_following" in row:
        parts.append(f"oracle IF {row['reward/oracle_instruction_following']:.3f}")
    for key in ("train/loss", "train/kl", "train/clip_fraction"):
        if key in row:
            parts.append(f"{key.split('/')[1]} {row[key]:.4g}")
    if "eval/oracle_instruction_following" in row:
        parts.append(f"held-out oracle IF {row['eval/oracle_instruction_following']:.3f}")
    parts.append(f"{row.get('time/step', 0):.1f}s")
    print(" | ".join(parts), flush=True)


__all__ = ["Algorithm", "Run", "setup_run", "train", "load_policy", "save_rl_checkpoint", "load_rl_checkpoint",
           "info_means", "print_step"]
