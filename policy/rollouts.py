"""Rollouts of online RL: the prompts a step edits, and groups of SDE edits sampled with overlapped scoring.

``sample_groups`` is the SAMPLE + SCORE stage of every RL loop: ``group_size`` edits per (source, instruction)
prompt, sampled chunk by chunk while a background thread scores the previous chunk (so a Ray reward service
works while the editor samples), with every latent and log-probability recorded for the update.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

import numpy as np
import torch

from policy.config import DataSection, SamplingSection


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
    from editrl.io import DataError, iter_jsonl, load_row_image, text_problem, warn_rejects

    if data.manifest is None:
        raise DataError("<config>", "data.kind is 'manifest' but data.manifest is not set", field="data.manifest")
    prompts, rejects = [], []
    for line, row in iter_jsonl(data.manifest, required=("source", "instruction"), rejects=rejects):
        try:
            problem = text_problem(row["instruction"])
            if problem is not None:
                raise DataError(data.manifest, problem, line=line, field="instruction")
            image = load_row_image(data.manifest, line, row, "source")
        except DataError as err:
            rejects.append(err)
            continue
        prompts.append(Prompt(image, row["instruction"], f"{row['source']}|{row['instruction']}"))
    if not prompts:
        raise DataError(data.manifest, "manifest holds no usable prompts"
                        + (f" (first reject: {rejects[0]})" if rejects else ""))
    warn_rejects(data.manifest, rejects, len(prompts), "prompt rows")
    return prompts


def held_out_prompts(num_tasks: int, size: int) -> list[Prompt]:
    """Editworld tasks from the held-out seed: never trained on, scored by the oracle."""
    from editworld.tasks import HELD_OUT_SEED, sample_tasks

    return [Prompt(t.source_image(size), t.instruction, f"heldout:{i}", t)
            for i, t in enumerate(sample_tasks(num_tasks, HELD_OUT_SEED, size=size))]


def step_generator(seed: int, step: int, stream: int, device: Any = "cpu") -> torch.Generator:
    """A generator owned by (seed, step, stream): what makes a step's randomness independent of history."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step * 101 + stream) % (2**63 - 1))
    return g


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
                  generator: torch.Generator, with_oracle: bool = True,
                  chunk_generator: Callable[[int], torch.Generator] | None = None, first_chunk: int = 0
                  ) -> tuple[Rollout, dict[str, float]]:
    """SAMPLE + SCORE: ``group_size`` SDE edits per prompt, scored in a background thread chunk by chunk.

    ``generator`` draws the SDE window, and the noise too unless ``chunk_generator(c)`` gives chunk ``c``'s
    generator (``c`` counted from ``first_chunk``: a process's first chunk in the step's global batch), which makes
    each chunk's edits the same whichever process samples it."""
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
            g = generator if chunk_generator is None else chunk_generator(first_chunk + start // chunk)
            start_noise = {}
            if sampling.shared_initial_noise:  # one draw per prompt, repeated over its group
                start_noise["initial"] = editor.initial_latents(cond.index(ids), g).repeat_interleave(G, 0)
            out = editor.sample(cond.index(rows), num_steps=sampling.num_steps, noise_level=sampling.noise_level,
                                guidance=sampling.guidance, generator=g, return_trajectory=True, **window,
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


__all__ = ["Prompt", "PromptPool", "load_prompts", "held_out_prompts", "step_generator", "Rollout", "score_edits",
           "sde_window_steps", "sample_groups", "fill_failed_rewards"]
