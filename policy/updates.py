"""The updates of online RL: how a rollout and its targets train the policy (``UPDATES``, ``train.policy_loss``).

Each update has one signature — ``update(editor, named_params, optimizer, rollout, targets, cfg, generator,
accelerator=None, reference=None) -> stats`` — and differs only in what ``targets`` are and which pure loss of
``policy.losses`` it minimises:

* ``group_dpo`` (GRPO, DGPO; the shipped presets): targets = advantages; each group's final edits are noised with
  one shared (noise, t) and their flow-matching errors, weighted by the advantages, enter one DPO sigmoid;
* ``clipped`` (GRPO, Flow-GRPO): targets = advantages; the recorded SDE steps' log-probabilities are recomputed
  under the current policy inside the clipped ratio surrogate, plus beta * KL to the reference;
* ``nft`` (GRPO, DiffusionNFT): targets = advantages, mapped to optimality probabilities; the final edits are noised
  afresh at stratified t and train the implicit positive / negative policies against the sampling policy
  (a snapshot of the weights that sampled the step);
* ``flow_dpo`` (DPO): targets = (winner, loser) row pairs; Diffusion-DPO on the final edits.

The reference is the editor with its adapter disabled unless ``reference`` (a context manager) says otherwise.
"""

from __future__ import annotations

import zlib
from contextlib import contextmanager
from typing import Any, Callable, Hashable, Iterator, Sequence

import torch

from policy.losses import (clipped_policy_loss, flow_dpo_loss, group_dpo_loss, group_preference_weights, kl_penalty,
                           nft_loss, nft_optimality, noised, policy_loss_stats, velocity_mse)
from policy.rollouts import Rollout
from rollout.sde import sde_step_with_logprob


def clipped_update(editor: Any, named_params: list[tuple[str, torch.nn.Parameter]], optimizer: torch.optim.Optimizer,
                   rollout: Rollout, advantages: torch.Tensor, cfg: Any, generator: torch.Generator,
                   accelerator: Any = None, reference: Any = None) -> dict[str, float]:
    """Flow-GRPO (``policy_loss=clipped``): inner epochs over shuffled samples and a subset of the SDE steps;
    recompute each recorded step's log-probability under the current policy, clipped surrogate + beta * KL to the
    adapter-disabled reference. Returns mean loss / KL / clip statistics."""
    tr, sp, lc = cfg.train, cfg.sampling, cfg.train.clipped
    reference = reference or editor.reference
    params = [p for _, p in named_params]
    N, T = rollout.log_probs.shape
    trainable = list(range(T)) if rollout.sde_steps is None else list(rollout.sde_steps)  # ODE steps have no log-prob
    n_t = max(1, min(len(trainable), round(len(trainable) * lc.timestep_fraction)))
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
                policy_loss = clipped_policy_loss(logp, old, adv[rows_d], lc.clip_range, lc.adv_clip)
                kl = torch.zeros((), device=device)
                if lc.beta > 0:
                    with torch.no_grad(), reference():
                        v_ref = editor.velocity(x, s, cond, guidance=sp.guidance)
                        _, _, mean_ref, _ = sde_step_with_logprob(v_ref, x, s, s_next, sp.noise_level,
                                                                  prev_sample=x_next)
                    kl = kl_penalty(mean, mean_ref, std.reshape(-1))
                loss = policy_loss + lc.beta * kl
                scaled = loss / (n_t * tr.grad_accum)
                backward(scaled, accelerator)
                stats = policy_loss_stats(logp.detach(), old, lc.clip_range)
                totals["loss"] += float(loss.detach())
                totals["policy_loss"] += float(policy_loss.detach())
                totals["kl"] += float(kl.detach())
                totals["clip_fraction"] += stats.clip_fraction
                totals["approx_kl"] += stats.approx_kl
                n_terms += 1
            if (b + 1) % tr.grad_accum == 0 or b == len(batches) - 1:
                totals["grad_norm"] += optimizer_step(params, optimizer, tr.max_grad_norm, accelerator)
                n_opt += 1
    return mean_stats(totals, n_terms, n_opt)


def mean_stats(totals: dict[str, float], n_terms: int, n_opt: int) -> dict[str, float]:
    """An update's statistics: sums over loss terms become means, ``grad_norm`` the mean over optimiser steps."""
    out = {k: v / max(n_terms, 1) for k, v in totals.items() if k != "grad_norm"}
    out["grad_norm"] = totals["grad_norm"] / max(n_opt, 1)
    out["optimizer_steps"] = float(n_opt)
    return out


def backward(loss: torch.Tensor, accelerator: Any = None) -> None:
    """Accumulate gradients of ``loss`` (through accelerate when it runs the show)."""
    if accelerator is not None:
        accelerator.backward(loss)
    else:
        loss.backward()


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


def noised_errors(editor: Any, x0: torch.Tensor, noise: torch.Tensor, t: float | torch.Tensor, cond: Any,
                  guidance: float | None, reference: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample flow-matching errors ``(policy, reference)`` of ``x0`` noised to ``x_t = (1 - t) x0 + t noise``
    against the target ``noise - x0``; ``t`` is a float or one value per sample (B,). ``reference()`` is a context
    manager running the reference (no gradient). The reference runs first: an online reference swaps weights in
    place, which must not follow the graph."""
    x_t = noised(x0, noise, t)
    target = noise - x0
    with torch.no_grad(), reference():
        err_ref = velocity_mse(editor.velocity(x_t, t, cond, guidance=guidance), target)
    err = velocity_mse(editor.velocity(x_t, t, cond, guidance=guidance), target)
    return err, err_ref


def dpo_update(editor: Any, named_params: list[tuple[str, torch.nn.Parameter]], optimizer: torch.optim.Optimizer,
               rollout: Rollout, pairs: list[tuple[int, int]], cfg: Any, generator: torch.Generator,
               accelerator: Any = None, reference: Any = None) -> dict[str, float]:
    """Flow-matching DPO over (winner row, loser row) pairs; ``reference()`` is a context manager running the
    reference (default: the adapter disabled)."""
    reference = reference or editor.reference
    tr = cfg.train
    params = [p for _, p in named_params]
    x0_all = rollout.latents[:, -1].float()
    device = x0_all.device
    totals = {"loss": 0.0, "accuracy": 0.0, "grad_norm": 0.0}
    n_terms = n_opt = 0
    optimizer.zero_grad(set_to_none=True)
    for _ in range(tr.inner_epochs):
        order = torch.randperm(len(pairs), generator=generator).tolist()
        for b, start in enumerate(range(0, len(order), tr.micro_batch)):
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
                scaled = loss / (tr.timesteps_per_pair * tr.grad_accum)
                backward(scaled, accelerator)
                totals["loss"] += float(loss.detach())
                totals["accuracy"] += float(acc)
                n_terms += 1
            if (b + 1) % tr.grad_accum == 0 or start + tr.micro_batch >= len(order):
                totals["grad_norm"] += optimizer_step(params, optimizer, tr.max_grad_norm, accelerator)
                n_opt += 1
    return {"loss": totals["loss"] / max(n_terms, 1), "accuracy": totals["accuracy"] / max(n_terms, 1),
            "grad_norm": totals["grad_norm"] / max(n_opt, 1), "optimizer_steps": float(n_opt)}


def group_dpo_update(editor: Any, named_params: list[tuple[str, torch.nn.Parameter]],
                     optimizer: torch.optim.Optimizer, rollout: Rollout, advantages: torch.Tensor, cfg: Any,
                     generator: torch.Generator, accelerator: Any = None, reference: Any = None) -> dict[str, float]:
    """DGPO (``policy_loss=group_dpo``): every group's final edits, noised with one shared (noise, t), their
    flow-matching errors weighted by the advantages inside one DPO sigmoid against the reference
    (``policy.losses.group_dpo_loss``). Micro-batches hold whole groups; groups with zero advantages are skipped."""
    tr, lc = cfg.train, cfg.train.group_dpo
    reference = reference or editor.reference
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
    base = int(torch.randint(0, 2**62, (), generator=generator))
    for epoch in range(tr.inner_epochs if group_rows else 0):
        order = torch.randperm(len(group_rows), generator=generator).tolist()
        for start in range(0, len(order), per_batch):
            chosen = [group_rows[i] for i in order[start:start + per_batch]]
            rows = torch.tensor([r for g in chosen for r in g])
            cond = rollout.row_cond(rows)
            x0 = x0_all[rows.to(device)]
            ids = [keys[int(r)] for r in rows]
            for k in range(lc.timesteps_per_group):
                # one (noise, t) per group and draw, from a generator owned by (step, group, epoch, draw): the same
                # numbers whichever process or micro-batch the group lands in
                noise, t = [], []
                for g_rows in chosen:
                    gen = torch.Generator().manual_seed((base + zlib.crc32(keys[g_rows[0]].encode()) * 7919
                                                         + epoch * 131 + k) % (2**63 - 1))
                    noise.append(torch.randn((1, *x0.shape[1:]), generator=gen).expand(len(g_rows), *x0.shape[1:]))
                    t.append(torch.full((len(g_rows),), float(torch.rand((), generator=gen)) * 0.98 + 0.01))
                noise, t = torch.cat(noise).to(device), torch.cat(t)
                err, err_ref = noised_errors(editor, x0, noise, t, cond, cfg.sampling.guidance, reference)
                loss, acc = group_dpo_loss(err, err_ref, advantages[rows], ids, lc.beta)
                scaled = loss / (lc.timesteps_per_group * tr.grad_accum)
                backward(scaled, accelerator)
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


def stratified_levels(n: int, k: int, t_min: float, t_max: float, generator: torch.Generator) -> torch.Tensor:
    """(k, n) noise levels: draw j of sample i lies in the j-th of k equal slices of ``[t_min, t_max]`` (each
    sample's k levels in a random order), so every edit is trained across the whole range each epoch."""
    u = torch.rand((k, n), generator=generator)
    slot = torch.argsort(torch.rand((k, n), generator=generator), dim=0).float()
    return t_min + (t_max - t_min) * (slot + u) / k


def nft_update(editor: Any, named_params: list[tuple[str, torch.nn.Parameter]], optimizer: torch.optim.Optimizer,
               rollout: Rollout, advantages: torch.Tensor, cfg: Any, generator: torch.Generator,
               accelerator: Any = None, reference: Any = None) -> dict[str, float]:
    """DiffusionNFT (``policy_loss=nft``): shuffled micro-batches of the step's final edits, each noised at
    ``timesteps_per_sample`` stratified levels with fresh noise; ``policy.losses.nft_loss`` against the velocity of
    the sampling policy (the weights as the update starts), plus ``kl_beta`` times the velocity gap to the
    reference. Samples with zero advantage still train (r = 1/2 keeps v near v_old)."""
    tr, lc = cfg.train, cfg.train.nft
    reference = reference or editor.reference
    params = [p for _, p in named_params]
    old = LoraSnapshot(named_params)
    x0_all = rollout.latents[:, -1].float()
    device = x0_all.device
    N = x0_all.shape[0]
    r_all = nft_optimality(advantages, lc.adv_clip).to(device)
    K = lc.timesteps_per_sample
    totals = {"loss": 0.0, "positive_error": 0.0, "negative_error": 0.0, "drift": 0.0, "kl": 0.0,
              "grad_norm": 0.0}
    n_terms = n_opt = 0
    optimizer.zero_grad(set_to_none=True)
    for _ in range(tr.inner_epochs):
        levels = stratified_levels(N, K, lc.t_min, lc.t_max, generator)
        perm = torch.randperm(N, generator=generator)
        batches = [perm[i:i + tr.micro_batch] for i in range(0, N, tr.micro_batch)]
        for b, rows in enumerate(batches):
            cond = rollout.row_cond(rows)
            rows_d = rows.to(device)
            x0 = x0_all[rows_d]
            for k in range(K):
                noise = torch.randn(x0.shape, generator=generator).to(device)
                t = levels[k, rows]
                x_t = noised(x0, noise, t)
                with torch.no_grad(), old.swapped_in():
                    v_old = editor.velocity(x_t, t, cond, guidance=cfg.sampling.guidance)
                kl = torch.zeros((), device=device)
                v = editor.velocity(x_t, t, cond, guidance=cfg.sampling.guidance)
                loss, stats = nft_loss(v, v_old, x_t, x0, t, r_all[rows_d], lc.beta, lc.adv_clip)
                if lc.kl_beta > 0:
                    with torch.no_grad(), reference():
                        v_ref = editor.velocity(x_t, t, cond, guidance=cfg.sampling.guidance)
                    kl = ((v.float() - v_ref.float()) ** 2).mean()
                    loss = loss + lc.kl_beta * kl
                backward(loss / (K * tr.grad_accum), accelerator)
                totals["loss"] += float(loss.detach())
                totals["kl"] += float(kl.detach())
                for key, value in stats.items():
                    totals[key] += value
                n_terms += 1
            if (b + 1) % tr.grad_accum == 0 or b == len(batches) - 1:
                totals["grad_norm"] += optimizer_step(params, optimizer, tr.max_grad_norm, accelerator)
                n_opt += 1
    return {**mean_stats(totals, n_terms, n_opt), "optimality_mean": float(r_all.mean())}


UPDATES: dict[str, Callable[..., dict[str, float]]] = {
    "group_dpo": group_dpo_update,
    "nft": nft_update,
    "clipped": clipped_update,
    "flow_dpo": dpo_update,
}

__all__ = ["clipped_update", "group_dpo_update", "nft_update", "stratified_levels", "dpo_update", "noised_errors", "optimizer_step", "best_worst_pairs",
           "LoraSnapshot", "UPDATES"]
