"""Online GRPO for flow-matching editors, as one readable driver (DESIGN.md "Online RL", Flow-GRPO).

One iteration of ``train_grpo``::

    SAMPLE     G edits per (source, instruction) with SDE steps, recording every latent and log-prob
    SCORE      the reward function (reward client, oracle, mix) — chunk k is scored in a thread while
               chunk k+1 is sampled, so a remote (Ray) reward service works while the editor samples
    ADVANTAGE  group z-scores (policy.grpo.group_advantages) or per-prompt running statistics
    UPDATE     inner epochs over shuffled samples and a subset of the T steps: recompute log p of the
               recorded step under the current policy (rollout.sde.sde_step_with_logprob with
               prev_sample), clipped surrogate + beta * KL to the adapter-disabled reference,
               gradient accumulation and clipping, LoRA parameters only
    LOG        learned reward (per dimension), editworld oracle score, KL, clip fraction,
               zero-advantage groups, seconds per stage; held-out ODE evaluation every few steps
    CHECKPOINT LoRA weights, optimiser state, step, RNG, per-prompt statistics (safetensors + JSON)

Every step draws its randomness from generators seeded by (seed, step), and a checkpoint holds everything
else that evolves, so a resumed run continues the same curve. The shared pieces (prompts, editor set-up,
sampling with overlapped scoring, evaluation, checkpoints) are reused by the DPO driver
(``policy/online_dpo.py``).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

import numpy as np
import torch

from policy.grpo_config import DataSection, DPOConfig, EvalSection, GRPOConfig, SamplingSection

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "trainer_state.json"


# ====================================================================================== prompts
@dataclass
class Prompt:
    """One (source, instruction) the policy edits; ``task`` is set for editworld prompts (for the oracle)."""

    source: Any
    instruction: str
    key: str  # names the group: same key = same source and instruction
    task: Any = None


class PromptPool:
    """Training prompts: a seeded editworld task pool or a manifest; ``batch(step)`` is a pure function of step."""

    def __init__(self, data: DataSection, seed: int) -> None:
        self.data = data
        self.prompts = load_prompts(data)
        if len(self.prompts) < data.prompts_per_step:
            raise ValueError(f"data: {len(self.prompts)} prompts, fewer than prompts_per_step={data.prompts_per_step}")
        self.seed = seed

    def batch(self, step: int) -> list[Prompt]:
        """The prompts of ``step`` (1-based): consecutive slices of a per-epoch permutation of the pool."""
        n, k = len(self.prompts), self.data.prompts_per_step
        out = []
        for j in range((step - 1) * k, step * k):
            epoch, pos = divmod(j, n)
            order = np.random.default_rng([self.seed, 7, epoch]).permutation(n)
            out.append(self.prompts[order[pos]])
        return out


def load_prompts(data: DataSection) -> list[Prompt]:
    """Every training prompt the data section names."""
    if data.kind == "editworld":
        from editworld.tasks import sample_tasks

        tasks = sample_tasks(data.num_tasks, data.seed, size=data.image_size)
        return [Prompt(t.source_image(data.image_size), t.instruction, f"train{data.seed}:{i}", t)
                for i, t in enumerate(tasks)]
    from editrl.io import DataError, iter_jsonl, load_image, resolve_path

    if data.manifest is None:
        raise DataError("<config>", "data.kind is 'manifest' but data.manifest is not set", field="data.manifest")
    root = Path(data.manifest).parent
    prompts = []
    for line, row in iter_jsonl(data.manifest, required=("source", "instruction")):
        image = load_image(resolve_path(root, row["source"]), manifest=data.manifest, line=line)
        prompts.append(Prompt(image, str(row["instruction"]), f"{row['source']}|{row['instruction']}"))
    if not prompts:
        raise DataError(data.manifest, "manifest holds no prompts")
    return prompts


def held_out_prompts(num_tasks: int, size: int) -> list[Prompt]:
    """Editworld tasks from the held-out seed: never trained on, scored by the oracle."""
    from editworld.tasks import HELD_OUT_SEED, sample_tasks

    return [Prompt(t.source_image(size), t.instruction, f"heldout:{i}", t)
            for i, t in enumerate(sample_tasks(num_tasks, HELD_OUT_SEED, size=size))]


# ====================================================================================== set-up
def step_generator(seed: int, step: int, stream: int, device: Any = "cpu") -> torch.Generator:
    """A generator owned by (seed, step, stream): what makes a step's randomness independent of history."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step * 101 + stream) % (2**63 - 1))
    return g


def denoiser(editor: Any) -> torch.nn.Module:
    """The trained network of an editor (``transformer`` for the diffusers editors, else ``model``)."""
    module = getattr(editor, "transformer", None) or getattr(editor, "model", None)
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"{type(editor).__name__} exposes neither .transformer nor .model as a torch module")
    return module


def editor_device(editor: Any) -> torch.device:
    """Where the editor's denoiser lives."""
    dev = getattr(editor, "device", None)
    return torch.device(dev) if dev is not None else next(denoiser(editor).parameters()).device


def load_policy(cfg: Any, accelerator: Any = None) -> tuple[Any, list[tuple[str, torch.nn.Parameter]]]:
    """Load the editor, attach a LoRA adapter (seeded) and return ``(editor, [(name, trained param), ...])``."""
    from rollout.registry import load_editor

    kwargs = dict(cfg.editor.load_kwargs)
    if accelerator is not None and "device" not in kwargs and accelerator.device.type != "cpu":
        kwargs["device"] = str(accelerator.device)
    editor = load_editor(cfg.editor.spec, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        targets = {"target_modules": cfg.editor.lora_targets} if cfg.editor.lora_targets else {}
        lora = editor.add_lora(rank=cfg.editor.lora_rank, alpha=cfg.editor.lora_alpha, **targets)
    lora_ids = {id(p) for p in lora}
    named = [(n, p) for n, p in denoiser(editor).named_parameters()
             if p.requires_grad and (id(p) in lora_ids or not cfg.editor.train_lora_only)]
    if not named:
        raise RuntimeError("the editor has no trainable parameters after add_lora")
    return editor, named


def make_accelerator(enabled: bool) -> Any:
    """An accelerate Accelerator (multi-process runs via `accelerate launch`), or None."""
    if not enabled:
        return None
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())


def make_optimizer(params: Sequence[torch.nn.Parameter], train: Any) -> torch.optim.Optimizer:
    """AdamW over the trained parameters."""
    return torch.optim.AdamW(params, lr=train.learning_rate, betas=tuple(train.adam_betas),
                             weight_decay=train.weight_decay)


def make_reward(cfg: Any, client: Any = None) -> tuple[Callable, Any]:
    """``(reward function, reward client or None)``: the client is shared with evaluation."""
    from policy.rewards import build_reward_fn, needs_client

    if client is None and (needs_client(cfg.reward) or cfg.eval.learned_reward and cfg.eval.num_tasks > 0):
        from reward.client import make_reward_client

        client = make_reward_client(cfg.reward.client, device=cfg.reward.device)
    return build_reward_fn(cfg.reward, client), client


# ====================================================================================== sampling
@dataclass
class Rollout:
    """Edits of one step: row i edits ``prompts[prompt_index[i]]``; trajectories on the editor's device."""

    prompts: list[Prompt]
    prompt_index: torch.Tensor  # (N,) long
    cond: Any  # conditioning of the prompts (one row per prompt)
    images: list
    latents: torch.Tensor  # (N, T+1, ...)
    sigmas: torch.Tensor  # (T+1,)
    log_probs: torch.Tensor  # (N, T)
    sde_steps: list[int] | None = None  # the SDE (trainable) steps when sampling.sde_window > 0; None = all T
    rewards: torch.Tensor = field(default_factory=lambda: torch.empty(0))  # (N,) float32
    info: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def group_keys(self) -> list[str]:
        return [self.prompts[int(i)].key for i in self.prompt_index]

    def row_cond(self, rows: torch.Tensor) -> Any:
        """Conditioning of the given sample rows."""
        return self.cond.index(self.prompt_index[rows].tolist())


def score_edits(reward_fn: Callable, images: list, prompts: list[Prompt], with_oracle: bool
                ) -> tuple[torch.Tensor, dict[str, np.ndarray], float]:
    """Reward (and, on the editworld, oracle) of edits; returns ``(rewards, info, seconds)``."""
    t0 = time.perf_counter()
    instructions = [p.instruction for p in prompts]
    metadata = [{"source": p.source, "group": p.key, "task": p.task} for p in prompts]
    rewards, info = reward_fn(images, instructions, metadata)
    info = dict(info)
    if with_oracle and all(p.task is not None for p in prompts) and not any(k.startswith("oracle_") for k in info):
        from policy.rewards import OracleRewardFn

        info.update(OracleRewardFn()(images, instructions, metadata)[1])
    return rewards, info, time.perf_counter() - t0


def sde_window_steps(sampling: SamplingSection, generator: torch.Generator) -> list[int] | None:
    """The SDE steps of one RL step: ``sde_window`` consecutive steps from a start in the schedule's first half."""
    from rollout.sampling import sde_window

    try:
        return sde_window(sampling.num_steps, sampling.sde_window, generator)
    except ValueError as err:
        raise ValueError(f"sampling.{err}") from None


def sample_groups(editor: Any, reward_fn: Callable, prompts: list[Prompt], sampling: SamplingSection,
                  generator: torch.Generator, with_oracle: bool = True) -> tuple[Rollout, dict[str, float]]:
    """SAMPLE + SCORE: ``group_size`` SDE edits per prompt, scored in a background thread chunk by chunk."""
    G = sampling.group_size
    t_start = time.perf_counter()
    sde_steps = sde_window_steps(sampling, generator)
    window = {} if sde_steps is None else {"sde_steps": sde_steps}  # editors without the argument keep working
    cond = editor.prepare([p.source for p in prompts], [p.instruction for p in prompts])
    chunk = max(1, sampling.prompts_per_chunk)
    futures: list[Future] = []
    latents, log_probs, images, sigmas = [], [], [], None
    sample_s = 0.0
    with ThreadPoolExecutor(max_workers=1) as pool:
        for start in range(0, len(prompts), chunk):
            ids = list(range(start, min(start + chunk, len(prompts))))
            rows = [i for i in ids for _ in range(G)]
            t0 = time.perf_counter()
            start_noise = {}
            if sampling.shared_initial_noise:  # one draw per prompt, repeated over its group
                start_noise["initial"] = editor.initial_latents(cond.index(ids), generator).repeat_interleave(G, 0)
            out = editor.sample(cond.index(rows), num_steps=sampling.num_steps, noise_level=sampling.noise_level,
                                guidance=sampling.guidance, generator=generator, return_trajectory=True, **window,
                                **start_noise)
            sample_s += time.perf_counter() - t0
            traj = out.trajectory
            latents.append(traj.latents)
            log_probs.append(traj.log_probs)
            sigmas = traj.sigmas
            images.extend(out.images)
            futures.append(pool.submit(score_edits, reward_fn, list(out.images), [prompts[i] for i in rows],
                                       with_oracle))
        t_wait = time.perf_counter()
        results = [f.result() for f in futures]
        wait_s = time.perf_counter() - t_wait
    rewards = torch.cat([r[0].float().cpu() for r in results])
    info: dict[str, np.ndarray] = {}
    for key in results[0][1]:
        info[key] = np.concatenate([np.asarray(r[1][key], dtype=np.float64) for r in results])
    rollout = Rollout(prompts=prompts, prompt_index=torch.arange(len(prompts)).repeat_interleave(G), cond=cond,
                      images=images, latents=torch.cat(latents), sigmas=sigmas, log_probs=torch.cat(log_probs),
                      sde_steps=sde_steps, rewards=rewards, info=info)
    timings = {"time/sample": sample_s, "time/score": sum(r[2] for r in results), "time/score_wait": wait_s,
               "time/sample_and_score": time.perf_counter() - t_start}
    return rollout, timings


def fill_failed_rewards(rewards: torch.Tensor, keys: Sequence[Hashable]) -> tuple[torch.Tensor, int]:
    """Replace NaN rewards (the client failed on the item) by their group's mean: zero advantage, no crash."""
    r = rewards.clone()
    bad = ~torch.isfinite(r)
    if not bad.any():
        return r, 0
    for key in set(keys):
        idx = torch.tensor([i for i, k in enumerate(keys) if k == key])
        good = idx[torch.isfinite(r[idx])]
        fill = r[good].mean() if len(good) else torch.tensor(0.0)
        r[idx[~torch.isfinite(r[idx])]] = fill
    return r, int(bad.sum())


# ====================================================================================== advantages
class PromptStatTracker:
    """Per-prompt reward history across steps (Flow-GRPO): advantages against each prompt's running mean/std."""

    def __init__(self, history: int = 64) -> None:
        self.history = history
        self.stats: dict[str, list[float]] = {}

    def advantages(self, rewards: np.ndarray, keys: Sequence[str], eps: float = 1e-4) -> np.ndarray:
        """Add this step's rewards to each prompt's history and z-score them against it."""
        out = np.empty(len(rewards), dtype=np.float64)
        for key in dict.fromkeys(keys):
            idx = [i for i, k in enumerate(keys) if k == key]
            hist = (self.stats.get(key, []) + [float(rewards[i]) for i in idx])[-self.history:]
            self.stats[key] = hist
            mean, std = float(np.mean(hist)), float(np.std(hist))
            out[idx] = (rewards[idx] - mean) / (std + eps) if std > 0 else 0.0
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "stats": self.stats}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = int(state["history"])
        self.stats = {k: [float(x) for x in v] for k, v in state["stats"].items()}


def zero_advantage_fraction(rewards: torch.Tensor, keys: Sequence[Hashable]) -> float:
    """Share of groups whose rewards are all equal: they teach GRPO nothing."""
    groups: dict[Hashable, list[float]] = {}
    for r, k in zip(rewards.tolist(), keys):
        groups.setdefault(k, []).append(r)
    return float(np.mean([np.ptp(v) < 1e-8 for v in groups.values()]))


# ====================================================================================== update
def grpo_update(editor: Any, named_params: list[tuple[str, torch.nn.Parameter]], optimizer: torch.optim.Optimizer,
                rollout: Rollout, advantages: torch.Tensor, cfg: GRPOConfig, generator: torch.Generator,
                accelerator: Any = None) -> dict[str, float]:
    """UPDATE: inner epochs over shuffled samples and trained timesteps; returns mean loss / KL / clip stats."""
    from policy.grpo import clipped_policy_loss, kl_penalty, policy_loss_stats
    from rollout.sde import sde_step_with_logprob

    tr, sp = cfg.train, cfg.sampling
    params = [p for _, p in named_params]
    N, T = rollout.log_probs.shape
    trainable = list(range(T)) if rollout.sde_steps is None else list(rollout.sde_steps)  # ODE steps have no log-prob
    n_t = max(1, min(len(trainable), round(len(trainable) * tr.timestep_fraction)))
    device = rollout.latents.device
    adv = advantages.to(device)
    totals: dict[str, float] = {"loss": 0.0, "policy_loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "approx_kl": 0.0,
                                "grad_norm": 0.0}
    n_terms = n_opt = 0
    optimizer.zero_grad(set_to_none=True)
    for _ in range(tr.inner_epochs):
        perm = torch.randperm(N, generator=generator)
        batches = [perm[i:i + tr.micro_batch] for i in range(0, N, tr.micro_batch)]
        for b, rows in enumerate(batches):
            # one random subset of the T steps per micro-batch (rows share a sigma)
            steps = sorted(trainable[i] for i in torch.randperm(len(trainable), generator=generator)[:n_t].tolist())
            cond = rollout.row_cond(rows)
            rows_d = rows.to(device)
            for t in steps:
                x, x_next = rollout.latents[rows_d, t], rollout.latents[rows_d, t + 1]
                s, s_next = rollout.sigmas[t], rollout.sigmas[t + 1]
                v = editor.velocity(x, s, cond, guidance=sp.guidance)
                _, logp, mean, std = sde_step_with_logprob(v, x, s, s_next, sp.noise_level, prev_sample=x_next)
                old = rollout.log_probs[rows_d, t]
                policy_loss = clipped_policy_loss(logp, old, adv[rows_d], tr.clip_range, tr.adv_clip)
                kl = torch.zeros((), device=device)
                if tr.beta > 0:
                    with torch.no_grad(), editor.reference():
                        v_ref = editor.velocity(x, s, cond, guidance=sp.guidance)
                        _, _, mean_ref, _ = sde_step_with_logprob(v_ref, x, s, s_next, sp.noise_level,
                                                                  prev_sample=x_next)
                    kl = kl_penalty(mean, mean_ref, std.reshape(-1))
                loss = policy_loss + tr.beta * kl
                scaled = loss / (n_t * tr.grad_accum)
                if accelerator is not None:
                    accelerator.backward(scaled)
                else:
                    scaled.backward()
                stats = policy_loss_stats(logp.detach(), old, tr.clip_range)
                totals["loss"] += float(loss.detach())
                totals["policy_loss"] += float(policy_loss.detach())
                totals["kl"] += float(kl.detach())
                totals["clip_fraction"] += stats.clip_fraction
                totals["approx_kl"] += stats.approx_kl
                n_terms += 1
            if (b + 1) % tr.grad_accum == 0 or b == len(batches) - 1:
                totals["grad_norm"] += optimizer_step(params, optimizer, tr.max_grad_norm, accelerator)
                n_opt += 1
    out = {k: v / max(n_terms, 1) for k, v in totals.items() if k != "grad_norm"}
    out["grad_norm"] = totals["grad_norm"] / max(n_opt, 1)
    out["optimizer_steps"] = float(n_opt)
    return out


def optimizer_step(params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer, max_grad_norm: float,
                   accelerator: Any = None) -> float:
    """Average gradients over processes, clip, step, zero; returns the pre-clip gradient norm."""
    if accelerator is not None and accelerator.num_processes > 1:
        for p in params:
            if p.grad is not None:
                p.grad = accelerator.reduce(p.grad, reduction="mean")
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm > 0 else float("inf")) \
        if grads else torch.tensor(0.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


# ====================================================================================== evaluation
@torch.no_grad()
def evaluate_held_out(editor: Any, prompts: list[Prompt], ev: EvalSection, guidance: float | None, seed: int,
                      client: Any = None, grid_path: Path | None = None) -> dict[str, float]:
    """ODE edits of held-out editworld tasks with fixed noise; mean oracle scores (and learned reward)."""
    from editworld import DIMENSIONS
    from editworld.oracle import oracle_scores

    g = step_generator(seed, 0, 99, editor_device(editor))
    images: list = []
    for start in range(0, len(prompts), ev.batch_size):
        chunk = prompts[start:start + ev.batch_size]
        cond = editor.prepare([p.source for p in chunk], [p.instruction for p in chunk])
        images.extend(editor.sample(cond, num_steps=ev.num_steps, noise_level=0.0, guidance=guidance,
                                    generator=g).images)
    out: dict[str, float] = {}
    scores = [oracle_scores(p.task, im) for p, im in zip(prompts, images)]
    for d in DIMENSIONS:
        out[f"eval/oracle_{d}"] = float(np.mean([s[d] for s in scores]))
    if client is not None and ev.learned_reward:
        from policy.rewards import EditRewardFn

        r, info = EditRewardFn(client)(images, [p.instruction for p in prompts],
                                       [{"source": p.source, "group": p.key} for p in prompts])
        out["eval/reward"] = float(np.nanmean(r.numpy()))
        for k, v in info.items():
            if k.startswith("mu_"):
                out[f"eval/reward_{k}"] = float(np.nanmean(v))
    if grid_path is not None:
        save_grid(prompts[:8], images[:8], grid_path)
    return out


def save_grid(prompts: list[Prompt], images: list, path: Path) -> Path:
    """Rows of (source, edit, target) images: what the policy does to held-out tasks."""
    from PIL import Image

    size = images[0].size[0]
    grid = Image.new("RGB", (3 * size + 4, len(images) * (size + 2)), "white")
    for i, (p, im) in enumerate(zip(prompts, images)):
        row = [p.source, im, p.task.target_image(size) if p.task is not None else im]
        for j, tile in enumerate(row):
            grid.paste(tile.convert("RGB").resize((size, size)), (j * (size + 2), i * (size + 2)))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path


# ====================================================================================== checkpoints
def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, st in state["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        _, idx, k = name.split(".", 2)
        state.setdefault(int(idx), {})[k] = t
    for name, v in meta["scalars"].items():
        idx, k = name.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(out_dir: Path, step: int, named_params: list[tuple[str, torch.nn.Parameter]],
                    optimizer: torch.optim.Optimizer, extra_state: dict[str, Any],
                    extra_tensors: dict[str, torch.Tensor] | None = None, keep: int = 2) -> Path:
    """Write ``out_dir/checkpoints/step_XXXXXX`` atomically (weights, optimiser, RNG, trainer state)."""
    from safetensors.torch import save_file

    root = out_dir / CHECKPOINT_DIR
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp_step_{step:06d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file({n: p.detach().cpu().contiguous() for n, p in named_params}, str(tmp / "lora.safetensors"))
    opt_tensors, opt_meta = _flatten_optimizer(optimizer)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    rng = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"torch_cuda_{i}"] = s
    save_file(rng, str(tmp / "rng.safetensors"))
    if extra_tensors:
        save_file({k: v.detach().cpu().contiguous() for k, v in extra_tensors.items()}, str(tmp / "extra.safetensors"))
    np_state = np.random.get_state()
    state = {"step": step, "optimizer": opt_meta, "param_names": [n for n, _ in named_params],
             "python_rng": _jsonable_rng(random.getstate()),
             "numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]], **extra_state}
    (tmp / STATE_FILE).write_text(json.dumps(state, default=float))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted(root.glob("step_*"))[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
    return final


def _jsonable_rng(state: Any) -> Any:
    return [_jsonable_rng(s) for s in state] if isinstance(state, (tuple, list)) else state


def _tuple_rng(state: Any) -> Any:
    return tuple(_tuple_rng(s) for s in state) if isinstance(state, list) else state


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    found = sorted(p for p in (out_dir / CHECKPOINT_DIR).glob("step_*") if (p / STATE_FILE).is_file())
    return found[-1] if found else None


def load_checkpoint(path: Path, named_params: list[tuple[str, torch.nn.Parameter]],
                    optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore weights, optimiser and RNG from ``path``; returns ``(trainer state, extra tensors)``."""
    from safetensors.torch import load_file

    state = json.loads((path / STATE_FILE).read_text())
    load_trained_weights(path, named_params)
    opt_tensors = load_file(str(path / "optimizer.safetensors"))
    optimizer.load_state_dict(_unflatten_optimizer(opt_tensors, state["optimizer"]))
    rng = load_file(str(path / "rng.safetensors"))
    torch.set_rng_state(rng["torch_cpu"])
    if torch.cuda.is_available():
        cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("torch_cuda_"))]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    random.setstate(_tuple_rng(state["python_rng"]))
    ns = state["numpy_rng"]
    np.random.set_state((ns[0], np.asarray(ns[1], dtype=np.uint32), *ns[2:]))
    extra = load_file(str(path / "extra.safetensors")) if (path / "extra.safetensors").is_file() else {}
    return state, extra


def load_trained_weights(path: Path, named_params: list[tuple[str, torch.nn.Parameter]]) -> None:
    """Copy a checkpoint's ``lora.safetensors`` into the editor's trained parameters (names and shapes checked)."""
    from safetensors.torch import load_file

    from editrl.io import DataError

    weights = load_file(str(path / "lora.safetensors"))
    names = [n for n, _ in named_params]
    if sorted(weights) != sorted(names):
        missing, unexpected = sorted(set(names) - set(weights)), sorted(set(weights) - set(names))
        raise DataError(path / "lora.safetensors", f"parameters do not match the editor's adapter "
                        f"(missing {missing[:3]}, unexpected {unexpected[:3]}): different editor or LoRA config?")
    with torch.no_grad():
        for n, p in named_params:
            if weights[n].shape != p.shape:
                raise DataError(path / "lora.safetensors", f"{n}: shape {tuple(weights[n].shape)} != {tuple(p.shape)}")
            p.copy_(weights[n].to(p.device, p.dtype))


def load_run_config(run_dir: str | Path) -> GRPOConfig | DPOConfig:
    """The config an RL run saved (``run_dir/config.yaml``), as the GRPO or DPO config it is."""
    from editrl.config import ConfigError, load_config
    from editrl.io import DataError

    cfg_path = Path(run_dir) / "config.yaml"
    if not cfg_path.is_file():
        raise DataError(cfg_path, "missing: the run's config names the editor and its LoRA adapter")
    errors = []
    for config_cls in (GRPOConfig, DPOConfig):
        try:
            return load_config(config_cls, cfg_path)
        except ConfigError as err:
            errors.append(f"as {config_cls.__name__}: {err}")
    raise DataError(cfg_path, "not a GRPO or DPO run config (" + "; ".join(errors) + ")")


def load_trained_policy(path: str | Path, **load_kwargs: Any) -> Any:
    """The editor an RL run trained: ``path`` is a run folder (its newest checkpoint) or one ``checkpoints/step_N``
    folder; the editor and its adapter come from the run's ``config.yaml``. For sampling and evaluation (eval mode,
    no gradients); ``load_kwargs`` override the run's ``editor.load_kwargs`` (e.g. ``device``)."""
    from editrl.io import DataError

    path = Path(path)
    ckpt = path if (path / STATE_FILE).is_file() else latest_checkpoint(path)
    if ckpt is None:
        raise DataError(path, "not an RL run (no checkpoints/step_* with a trainer state) nor one of its checkpoints")
    cfg = load_run_config(ckpt.parent.parent)
    cfg.editor.load_kwargs = {**cfg.editor.load_kwargs, **load_kwargs}
    editor, named = load_policy(cfg)
    load_trained_weights(ckpt, named)
    for _, p in named:
        p.requires_grad_(False)
    denoiser(editor).eval()
    return editor


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop metric rows logged after ``last_step`` (a run that died after its last checkpoint)."""
    if not path.is_file():
        return
    rows = [line for line in path.read_text().splitlines() if line.strip()]
    keep = [line for line in rows if json.loads(line).get("step", -1) <= last_step]
    path.write_text("".join(line + "\n" for line in keep))


# ====================================================================================== the driver
@dataclass
class Run:
    """Everything a training driver holds between steps."""

    cfg: Any
    out: Path
    editor: Any
    named_params: list[tuple[str, torch.nn.Parameter]]
    optimizer: torch.optim.Optimizer
    reward_fn: Callable
    client: Any
    pool: PromptPool
    held_out: list[Prompt]
    accelerator: Any
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
                                 self.cfg.seed, self.client, grid)


def setup_run(cfg: Any, reward_client: Any = None) -> Run:
    """Output folder, saved config, editor + LoRA, optimiser, reward, prompts; resume from the last checkpoint."""
    from editrl.config import save_config

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    accelerator = make_accelerator(cfg.accelerate)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    editor, named = load_policy(cfg, accelerator)
    optimizer = make_optimizer([p for _, p in named], cfg.train)
    reward_fn, client = make_reward(cfg, reward_client)
    pool = PromptPool(cfg.data, cfg.seed)
    held_out = held_out_prompts(cfg.eval.num_tasks, cfg.data.image_size) if cfg.eval.num_tasks > 0 else []
    run = Run(cfg, out, editor, named, optimizer, reward_fn, client, pool, held_out, accelerator)
    ckpt = latest_checkpoint(out) if cfg.resume else None
    if ckpt is not None:
        run.resumed_state, run.resumed_tensors = load_checkpoint(ckpt, named, optimizer)
        run.start_step = int(run.resumed_state["step"])
        truncate_metrics(out / "metrics.jsonl", run.start_step)
        print(f"resumed from {ckpt} (step {run.start_step})")
    elif (out / "metrics.jsonl").exists():
        (out / "metrics.jsonl").unlink()  # a fresh run: no stale curve
    if run.is_main:
        save_config(cfg, out / "config.yaml")
    return run


def info_means(info: dict[str, np.ndarray], prefix: str = "reward/") -> dict[str, float]:
    """Mean of every per-item info array (NaN-aware), as metrics."""
    return {f"{prefix}{k}": float(np.nanmean(v)) if np.isfinite(v).any() else math.nan for k, v in info.items()}


def train_grpo(cfg: GRPOConfig, reward_client: Any = None) -> dict[str, Any]:
    """Run (or resume) GRPO; returns the last metrics row and where things were written."""
    from editrl.config import config_to_dict
    from editrl.metrics import MetricsSink
    from policy.grpo import group_advantages

    run = setup_run(cfg, reward_client)
    tracker = PromptStatTracker(cfg.train.stats_history)
    if "stat_tracker" in run.resumed_state:
        tracker.load_state_dict(run.resumed_state["stat_tracker"])
    device = editor_device(run.editor)
    sink = MetricsSink(run.out, wandb_project=cfg.wandb_project, config=config_to_dict(cfg)) if run.is_main else None
    row: dict[str, Any] = {}
    try:
        if run.start_step == 0 and run.held_out:
            row = run.evaluate(0)
            if sink:
                sink.log(row, step=0)
        for step in range(run.start_step + 1, cfg.steps + 1):
            t_step = time.perf_counter()
            prompts = run.pool.batch(step)
            if run.accelerator is not None and run.accelerator.num_processes > 1:
                prompts = prompts[run.accelerator.process_index::run.accelerator.num_processes]

            # ---- SAMPLE + SCORE: G SDE edits per prompt; chunk k scored while chunk k+1 samples
            rollout, timings = sample_groups(run.editor, run.reward_fn, prompts, cfg.sampling,
                                             step_generator(cfg.seed, step, 0, device), cfg.reward.log_oracle)

            # ---- ADVANTAGE: z-score within each group (or against each prompt's history)
            keys = rollout.group_keys
            rewards, n_failed = fill_failed_rewards(rollout.rewards, keys)
            if cfg.train.per_prompt_stats:
                adv = torch.from_numpy(tracker.advantages(rewards.double().numpy(), keys, cfg.train.adv_eps)).float()
            else:
                adv = group_advantages(rewards, keys, eps=cfg.train.adv_eps, global_std=cfg.train.global_std)

            # ---- UPDATE: clipped surrogate + beta * KL over shuffled samples and trained timesteps
            #      (or, with train.policy_loss=group_dpo, the advantage-weighted group DPO loss on the final edits)
            t0 = time.perf_counter()
            denoiser(run.editor).train()
            update = grpo_update
            if cfg.train.policy_loss == "group_dpo":
                from policy.online_dpo import group_dpo_update as update
            stats = update(run.editor, run.named_params, run.optimizer, rollout, adv, cfg,
                           step_generator(cfg.seed, step, 1), run.accelerator)
            denoiser(run.editor).eval()
            t_update = time.perf_counter() - t0

            # ---- LOG: learned reward per dimension beside the oracle; KL, clipping, dead groups, timings
            row = {"reward_mean": float(rewards.mean()), "reward_std": float(rewards.std(unbiased=False)),
                   "advantage_abs_mean": float(adv.abs().mean()), "zero_advantage_groups":
                   zero_advantage_fraction(rewards, keys), "reward_failures": n_failed,
                   **{f"train/{k}": v for k, v in stats.items()}, **info_means(rollout.info), **timings,
                   "time/update": t_update}
            if step % max(cfg.eval.every, 1) == 0 and cfg.eval.every > 0 or step == cfg.steps:
                t0 = time.perf_counter()
                row.update(run.evaluate(step))
                row["time/eval"] = time.perf_counter() - t0
            row["time/step"] = time.perf_counter() - t_step
            if sink:
                sink.log(row, step=step)
            _print_step(step, cfg.steps, row)

            # ---- CHECKPOINT: LoRA, optimiser, step, RNG, per-prompt statistics
            if run.is_main and (step % max(cfg.checkpoint_every, 1) == 0 or step == cfg.steps):
                save_checkpoint(run.out, step, run.named_params, run.optimizer,
                                {"stat_tracker": tracker.state_dict()}, keep=cfg.keep_checkpoints)
    finally:
        if sink:
            sink.close()
    return {"out": str(run.out), "metrics": str(run.out / "metrics.jsonl"), "last": row,
            "start_step": run.start_step, "editor": run.editor}


def _print_step(step: int, steps: int, row: dict[str, Any]) -> None:
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


__all__ = ["Prompt", "PromptPool", "Rollout", "PromptStatTracker", "train_grpo", "sample_groups", "grpo_update",
           "evaluate_held_out", "save_checkpoint", "load_checkpoint", "latest_checkpoint", "setup_run", "Run",
           "step_generator", "held_out_prompts", "zero_advantage_fraction", "fill_failed_rewards"]
