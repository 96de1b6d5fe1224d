"""Online DPO for flow-matching editors (DESIGN.md "Online RL"): best vs worst edit of each reward-ranked group.

One iteration of ``train_dpo``::

    SAMPLE     G edits per prompt (SDE sampling, as GRPO: diversity within a group)
    SCORE      the reward function; chunk k is scored while chunk k+1 samples
    PAIR       per group, the highest-reward edit is the winner, the lowest the loser (gap > min_reward_gap)
    UPDATE     winner and loser share noise and t: x_t = (1 - t) x0 + t noise, target noise - x0;
               policy.dpo.flow_dpo_loss against the reference — the adapter disabled ("fixed", offline DPO)
               or a snapshot of the LoRA weights refreshed every N steps ("online")
    LOG / EVAL / CHECKPOINT as GRPO (policy/online.py); the online reference snapshot is checkpointed too.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Hashable, Iterator, Sequence

import torch

from policy.grpo_config import DPOConfig
from policy.online import (Rollout, denoiser, editor_device, fill_failed_rewards, info_means, optimizer_step, sample_groups,
                           save_checkpoint, setup_run, step_generator, zero_advantage_fraction, _print_step)


def best_worst_pairs(rewards: torch.Tensor, keys: Sequence[Hashable], min_gap: float = 0.0, per_group: int = 1
                     ) -> list[tuple[int, int]]:
    """``(winner row, loser row)`` pairs of each group: its best vs its worst edit, and with ``per_group`` = k the
    i-th best vs the i-th worst for i < k (disjoint pairs, never more than half the group), each only if their
    rewards differ by more than ``min_gap``."""
    groups: dict[Hashable, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    pairs = []
    for rows in groups.values():
        # stable sort, best first: equal rewards keep sampling order
        order = sorted(rows, key=lambda i: -float(rewards[i]))
        for i in range(min(per_group, len(order) // 2)):
            w, l = order[i], order[-1 - i]
            if float(rewards[w] - rewards[l]) > min_gap:
                pairs.append((w, l))
    return pairs


class LoraSnapshot:
    """A frozen copy of the trained (LoRA) weights, swapped in to act as the online DPO reference."""

    def __init__(self, named_params: list[tuple[str, torch.nn.Parameter]]) -> None:
        self.named_params = named_params
        self.tensors: dict[str, torch.Tensor] = {}
        self.refresh()

    def refresh(self) -> None:
        """Copy the current weights into the snapshot."""
        self.tensors = {n: p.detach().clone() for n, p in self.named_params}

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Within the context the parameters hold the snapshot's values (no gradients should be taken)."""
        live = {n: p.detach().clone() for n, p in self.named_params}
        with torch.no_grad():
            for n, p in self.named_params:
                p.copy_(self.tensors[n])
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in self.named_params:
                    p.copy_(live[n])


def noised_errors(editor: Any, x0: torch.Tensor, noise: torch.Tensor, t: float, cond: Any, guidance: float | None,
                  reference: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample flow-matching errors ``(policy, reference)`` of ``x0`` noised to ``x_t = (1 - t) x0 + t noise``
    against the target ``noise - x0``; ``reference()`` is a context manager running the reference (no gradient).
    The reference runs first: an online reference swaps weights in place, which must not follow the graph."""
    from policy.dpo import velocity_mse

    x_t = (1 - t) * x0 + t * noise
    target = noise - x0
    with torch.no_grad(), reference():
        err_ref = velocity_mse(editor.velocity(x_t, t, cond, guidance=guidance), target)
    err = velocity_mse(editor.velocity(x_t, t, cond, guidance=guidance), target)
    return err, err_ref


def dpo_update(editor: Any, named_params: list[tuple[str, torch.nn.Parameter]], optimizer: torch.optim.Optimizer,
               rollout: Rollout, pairs: list[tuple[int, int]], cfg: DPOConfig, generator: torch.Generator,
               reference: Any, accelerator: Any = None) -> dict[str, float]:
    """UPDATE: flow-matching DPO over the pairs; ``reference()`` is a context manager running the reference."""
    from policy.dpo import flow_dpo_loss

    tr = cfg.train
    params = [p for _, p in named_params]
    x0_all = rollout.latents[:, -1].float()
    device = x0_all.device
    totals = {"loss": 0.0, "accuracy": 0.0, "grad_norm": 0.0}
    n_terms = n_opt = 0
    optimizer.zero_grad(set_to_none=True)
    for _ in range(tr.inner_epochs):
        order = torch.randperm(len(pairs), generator=generator).tolist()
        for start in range(0, len(order), tr.micro_batch):
            chosen = [pairs[i] for i in order[start:start + tr.micro_batch]]
            rows = torch.tensor([w for w, _ in chosen] + [l for _, l in chosen])
            P = len(chosen)
            cond = rollout.row_cond(rows)
            x0 = x0_all[rows.to(device)]
            for _ in range(tr.timesteps_per_pair):
                # winner and loser share noise and t (one t per micro-batch: editors may take a scalar sigma)
                noise = torch.randn(x0[:P].shape, generator=generator).to(device)
                noise = torch.cat([noise, noise])
                t = float(torch.rand((), generator=generator)) * 0.98 + 0.01
                err, err_ref = noised_errors(editor, x0, noise, t, cond, cfg.sampling.guidance, reference)
                loss, acc = flow_dpo_loss(err[:P], err_ref[:P], err[P:], err_ref[P:], tr.beta)
                scaled = loss / tr.timesteps_per_pair
                if accelerator is not None:
                    accelerator.backward(scaled)
                else:
                    scaled.backward()
                totals["loss"] += float(loss.detach())
                totals["accuracy"] += float(acc)
                n_terms += 1
            totals["grad_norm"] += optimizer_step(params, optimizer, tr.max_grad_norm, accelerator)
            n_opt += 1
    return {"loss": totals["loss"] / max(n_terms, 1), "accuracy": totals["accuracy"] / max(n_terms, 1),
            "grad_norm": totals["grad_norm"] / max(n_opt, 1), "optimizer_steps": float(n_opt)}


def group_dpo_update(editor: Any, named_params: list[tuple[str, torch.nn.Parameter]],
                     optimizer: torch.optim.Optimizer, rollout: Rollout, advantages: torch.Tensor, cfg: Any,
                     generator: torch.Generator, accelerator: Any = None) -> dict[str, float]:
    """GRPO's UPDATE with ``train.policy_loss=group_dpo`` (DGPO): every group's final edits, noised with one shared
    (noise, t), their flow-matching errors weighted by the advantages inside one DPO sigmoid against the reference
    (``policy.dpo.group_dpo_loss``). Micro-batches hold whole groups; groups with zero advantages are skipped."""
    from policy.dpo import group_dpo_loss, group_preference_weights

    tr = cfg.train
    params = [p for _, p in named_params]
    keys = rollout.group_keys
    weights = group_preference_weights(advantages, keys)
    groups: dict[Hashable, list[int]] = {}
    for i, k in enumerate(keys):
        if weights[i] != 0:
            groups.setdefault(k, []).append(i)
    group_rows = list(groups.values())
    x0_all = rollout.latents[:, -1].float()
    device = x0_all.device
    per_batch = max(1, tr.micro_batch // max(1, cfg.sampling.group_size))
    totals = {"loss": 0.0, "accuracy": 0.0, "grad_norm": 0.0}
    n_terms = n_opt = 0
    optimizer.zero_grad(set_to_none=True)
    for _ in range(tr.inner_epochs if group_rows else 0):
        order = torch.randperm(len(group_rows), generator=generator).tolist()
        for start in range(0, len(order), per_batch):
            chosen = [group_rows[i] for i in order[start:start + per_batch]]
            rows = torch.tensor([r for g in chosen for r in g])
            sizes = [len(g) for g in chosen]
            cond = rollout.row_cond(rows)
            x0 = x0_all[rows.to(device)]
            ids = [keys[int(r)] for r in rows]
            for _ in range(tr.timesteps_per_group):
                # one noise per group, repeated over its edits; one t per micro-batch (editors may take a scalar sigma)
                noise = torch.cat([torch.randn((1, *x0.shape[1:]), generator=generator).expand(n, *x0.shape[1:])
                                   for n in sizes]).to(device)
                t = float(torch.rand((), generator=generator)) * 0.98 + 0.01
                err, err_ref = noised_errors(editor, x0, noise, t, cond, cfg.sampling.guidance, editor.reference)
                loss, acc = group_dpo_loss(err, err_ref, advantages[rows], ids, tr.dpo_beta)
                scaled = loss / (tr.timesteps_per_group * tr.grad_accum)
                if accelerator is not None:
                    accelerator.backward(scaled)
                else:
                    scaled.backward()
                totals["loss"] += float(loss.detach())
                totals["accuracy"] += float(acc)
                n_terms += 1
            b = start // per_batch
            if (b + 1) % tr.grad_accum == 0 or start + per_batch >= len(order):
                totals["grad_norm"] += optimizer_step(params, optimizer, tr.max_grad_norm, accelerator)
                n_opt += 1
    return {"loss": totals["loss"] / max(n_terms, 1), "accuracy": totals["accuracy"] / max(n_terms, 1),
            "grad_norm": totals["grad_norm"] / max(n_opt, 1), "optimizer_steps": float(n_opt),
            "trained_groups": float(len(group_rows))}


def train_dpo(cfg: DPOConfig, reward_client: Any = None) -> dict[str, Any]:
    """Run (or resume) online DPO; returns the last metrics row and where things were written."""
    from editrl.config import config_to_dict
    from editrl.metrics import MetricsSink

    run = setup_run(cfg, reward_client)
    device = editor_device(run.editor)
    snapshot = None
    if cfg.train.reference == "online":
        snapshot = LoraSnapshot(run.named_params)
        if run.resumed_tensors:
            snapshot.tensors = {n: run.resumed_tensors[f"ref.{n}"].to(device) for n, _ in run.named_params}
    reference = snapshot.swapped_in if snapshot is not None else run.editor.reference
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

            # ---- SAMPLE + SCORE
            rollout, timings = sample_groups(run.editor, run.reward_fn, prompts, cfg.sampling,
                                             step_generator(cfg.seed, step, 0, device), cfg.reward.log_oracle)

            # ---- PAIR: best vs worst of each group
            keys = rollout.group_keys
            rewards, n_failed = fill_failed_rewards(rollout.rewards, keys)
            pairs = best_worst_pairs(rewards, keys, cfg.train.min_reward_gap, cfg.train.pairs_per_group)

            # ---- UPDATE
            t0 = time.perf_counter()
            stats: dict[str, float] = {}
            if pairs:
                denoiser(run.editor).train()
                stats = dpo_update(run.editor, run.named_params, run.optimizer, rollout, pairs, cfg,
                                   step_generator(cfg.seed, step, 1), reference, run.accelerator)
                denoiser(run.editor).eval()
            if snapshot is not None and step % max(cfg.train.refresh_every, 1) == 0:
                snapshot.refresh()
            t_update = time.perf_counter() - t0

            # ---- LOG
            gap = [float(rewards[w] - rewards[l]) for w, l in pairs]
            row = {"reward_mean": float(rewards.mean()), "reward_std": float(rewards.std(unbiased=False)),
                   "zero_advantage_groups": zero_advantage_fraction(rewards, keys), "reward_failures": n_failed,
                   "dpo/pairs": len(pairs), "dpo/reward_gap": sum(gap) / len(gap) if gap else 0.0,
                   **{f"dpo/{k}": v for k, v in stats.items()}, **info_means(rollout.info), **timings,
                   "time/update": t_update}
            if cfg.eval.every > 0 and step % cfg.eval.every == 0 or step == cfg.steps:
                t0 = time.perf_counter()
                row.update(run.evaluate(step))
                row["time/eval"] = time.perf_counter() - t0
            row["time/step"] = time.perf_counter() - t_step
            if sink:
                sink.log(row, step=step)
            _print_step(step, cfg.steps, {**row, "train/loss": stats.get("loss", float("nan"))})

            # ---- CHECKPOINT (with the online reference snapshot)
            if run.is_main and (step % max(cfg.checkpoint_every, 1) == 0 or step == cfg.steps):
                extra = {f"ref.{n}": t for n, t in snapshot.tensors.items()} if snapshot is not None else None
                save_checkpoint(run.out, step, run.named_params, run.optimizer, {}, extra,
                                keep=cfg.keep_checkpoints)
    finally:
        if sink:
            sink.close()
    return {"out": str(run.out), "metrics": str(run.out / "metrics.jsonl"), "last": row,
            "start_step": run.start_step, "editor": run.editor}


__all__ = ["best_worst_pairs", "LoraSnapshot", "noised_errors", "dpo_update", "group_dpo_update", "train_dpo"]
