# long: the reward training loop as one readable function in labelled sections, with its resume and eval helpers
"""Reward-model training loop: one readable function in labelled sections.

    setup -> data -> model, optimiser, schedule -> resume -> loop (forward pair or group batches, loss, step,
    log, validate, checkpoint) -> final model + training curve

Data order is a pure function of (seed, epoch) and the optimiser step, so a run resumed from a
checkpoint (``reward.train.state``: model, optimiser, RNG states and step through ``editrl.checkpoint``)
continues with exactly the loss curve it would have had without interruption; a resume whose inputs (pair files,
checkpoints, settings) changed since the checkpoint was written is refused (``reward.train.state``,
``OUT/fingerprint.json``). The global batch of a step is
the same pairs whatever the number of processes (each rank takes its slice of them), and the logged loss is
the mean over all of them.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from editrl.checkpoint import CheckpointStore
from editrl.config import config_to_dict, save_config
from editrl.metrics import MetricsSink
from reward.train.config import RewardTrainConfig
from reward.train.data import (GroupCollator, GroupDataset, PairCollator, PairDataset, PreferencePair, epoch_order,
                               load_pairs, split_by_group, subsample, training_samples)
from reward.train.state import check_training_inputs, resume_training, save_training_state


@dataclass
class TrainResult:
    """What a finished (or stopped) run leaves behind."""

    out_dir: Path
    final_dir: Path | None
    last_checkpoint: Path | None
    step: int
    losses: list[float] = field(default_factory=list)  # training loss of every optimiser step run in this call
    val_accuracy: float | None = None


# ---- model glue (the reward package's public API) ------------------------------------------------

def build_model(model_cfg: Any) -> tuple[torch.nn.Module, Any]:
    """A fresh reward model and its processor from the model config (local checkpoint or tiny-from-config)."""
    from reward.model.editreward import build_reward_model

    return build_reward_model(model_cfg)


# fields that may differ between a checkpoint and a run that starts from its weights: how it runs, not what it is
_RUNTIME_FIELDS = {"dtype", "gradient_checkpointing", "freeze_vision"}


def init_weights_from(model: torch.nn.Module, model_cfg: Any, checkpoint: str | Path) -> None:
    """Copy a reward checkpoint's weights into a freshly built ``model`` (``init_from``: fine-tuning)."""
    from editrl.io import DataError
    from reward.model.editreward import REWARD_CONFIG_NAME, load_checkpoint

    source, _, source_cfg = load_checkpoint(checkpoint)
    want, have = config_to_dict(model_cfg), config_to_dict(source_cfg)
    differ = sorted(k for k in set(want) | set(have) if k not in _RUNTIME_FIELDS and want.get(k) != have.get(k))
    if differ:
        detail = "; ".join(f"{k}: config {want.get(k)!r}, checkpoint {have.get(k)!r}" for k in differ)
        raise DataError(Path(checkpoint) / REWARD_CONFIG_NAME, f"init_from: the model section differs from the "
                                                               f"checkpoint's in {detail}")
    try:
        model.load_state_dict(source.state_dict(), strict=True)
    except RuntimeError as err:
        raise DataError(checkpoint, f"init_from: weights do not fit the configured model: {err}") from err


def pair_loss(cfg: RewardTrainConfig, mu: torch.Tensor, log_sigma: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """The configured objective on a batch whose rows [0, B) are winners and [B, 2B) losers; mu, log_sigma (2B, D).

    ``data.dimension_loss_weight`` > 0 adds that times the per-dimension ranking loss (each head ranked on its
    own dimension's labels) to the ranking objectives."""
    from reward.train import loss as L

    b = mu.shape[0] // 2
    kind, agg = cfg.data.loss, cfg.model.aggregation
    if kind == "pointwise":
        return L.pointwise_loss(mu, log_sigma, scores)
    if kind == "uncertainty":
        loss = L.ranking_loss(mu[:b], log_sigma[:b], mu[b:], log_sigma[b:], aggregation=agg,
                              estimator=cfg.data.estimator)
    elif kind == "probit":
        loss = L.probit_loss(mu[:b], log_sigma[:b], mu[b:], log_sigma[b:], aggregation=agg)
    else:
        loss = L.bradley_terry_loss(mu[:b], mu[b:], aggregation=agg)
    weight = cfg.data.dimension_loss_weight
    if weight > 0:
        loss = loss + weight * L.dimension_ranking_loss(mu[:b], log_sigma[:b], mu[b:], log_sigma[b:],
                                                        scores[:b], scores[b:],
                                                        likelihood="probit" if kind == "probit" else "uncertainty")
    return loss


def aggregate_scores(mu: torch.Tensor, log_sigma: torch.Tensor, how: str) -> torch.Tensor:
    """One ranking score per row (B,) from per-dimension Gaussians (B, D)."""
    from reward.train.loss import aggregate

    return aggregate(mu, log_sigma, how)[0]


# ---- data ------------------------------------------------------------------------------------------

def prepare_pairs(cfg: RewardTrainConfig) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Training samples (ties handled, subset taken) and non-tied validation pairs, from the config."""
    d = cfg.data
    pairs = load_pairs(d.train, d.image_root)
    for extra in d.extra_train:
        pairs += load_pairs(extra, d.image_root)
    if d.val is not None:
        train_pairs, val_pairs = pairs, load_pairs(d.val, d.image_root)
    else:
        train_pairs, val_pairs = split_by_group(pairs, d.val_fraction, cfg.train.seed)
    train_samples = training_samples(subsample(train_pairs, d.max_pairs, cfg.train.seed), d.tie_disentangle)
    val_samples = [p for p in val_pairs if not p.tie]
    if d.max_val_pairs is not None:
        val_samples = subsample(val_samples, d.max_val_pairs, cfg.train.seed)
    if not train_samples:
        from editrl.io import DataError

        raise DataError(d.train, "no usable training pairs (all tied and not disentanglable?)")
    return train_samples, val_samples


@torch.no_grad()
def pairwise_accuracy_on(model: torch.nn.Module, dataset: PairDataset, collate: PairCollator, batch_size: int,
                         aggregation: str, device: torch.device) -> tuple[float, float]:
    """(accuracy, mean loss-free margin) of the model on non-tied pairs: share with score(winner) > score(loser)."""
    was_training = model.training
    model.eval()
    correct, margin, n = 0, 0.0, 0
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch, _ = collate(items)
        out = model(**batch.to(device))
        s = aggregate_scores(out.mu.float(), out.log_sigma.float(), aggregation)  # (2B,)
        b = len(items)
        diff = s[:b] - s[b:]
        correct += int((diff > 0).sum())
        margin += float(diff.sum())
        n += b
    model.train(was_training)
    return correct / max(n, 1), margin / max(n, 1)


class MicroBatches(torch.utils.data.Dataset):
    """Global micro-batch index m -> this process's collated B pairs; epoch = m // micro_per_epoch, order from (seed, epoch)."""

    def __init__(self, pairs: PairDataset, collate: PairCollator, batch_size: int, micro_per_epoch: int, seed: int,
                 world: int = 1, rank: int = 0) -> None:
        self.pairs, self.collate, self.batch_size = pairs, collate, batch_size
        self.micro_per_epoch, self.seed, self.world, self.rank = micro_per_epoch, seed, world, rank
        self._order: tuple[int, list[int]] | None = None

    def indices(self, m: int) -> list[int]:
        epoch, k = divmod(m, self.micro_per_epoch)
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, epoch_order(len(self.pairs), self.seed, epoch))
        start = (k * self.world + self.rank) * self.batch_size
        return self._order[1][start:start + self.batch_size]

    def __getitem__(self, m: int):
        return self.collate([self.pairs[i] for i in self.indices(m)])


# ---- the run -------------------------------------------------------------------------------------

def train(cfg: RewardTrainConfig, *, stop_at_step: int | None = None, progress: bool = True) -> TrainResult:
    """Train a reward model as configured; ``stop_at_step`` interrupts (with a checkpoint) for resume tests."""
    from accelerate import Accelerator
    from accelerate.utils import DeepSpeedPlugin, set_seed
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    t = cfg.train
    out_dir = Path(cfg.out_dir)

    # ---- setup: accelerator, threads, seed, resolved config ----------------------------------------
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    use_cuda = torch.cuda.is_available()
    ds_plugin = None
    if t.deepspeed:
        ds_config = json.loads(Path(t.deepspeed).read_text())
        ds_config["train_micro_batch_size_per_gpu"] = t.batch_size  # pairs (2 sequences each)
        ds_config["gradient_accumulation_steps"] = t.grad_accum
        if ds_config.get("gradient_clipping") == "auto":
            ds_config["gradient_clipping"] = t.max_grad_norm
        ds_plugin = DeepSpeedPlugin(hf_ds_config=ds_config)
    accelerator = Accelerator(mixed_precision="bf16" if (t.bf16 and use_cuda) else "no",
                              gradient_accumulation_steps=t.grad_accum, cpu=not use_cuda and ds_plugin is None,
                              deepspeed_plugin=ds_plugin)  # cpu=True would silently drop DeepSpeed
    set_seed(t.seed)
    is_main = accelerator.is_main_process
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    store = CheckpointStore(out_dir, keep=t.keep_checkpoints)
    for note in check_training_inputs(cfg, store, accelerator.num_processes, write=is_main):  # before any work
        if is_main:
            print(note)
    if is_main:
        save_config(cfg, out_dir / "config.yaml")

    # ---- data: pairs -> samples -> deterministic micro-batches ---------------------------------------
    train_samples, val_samples = prepare_pairs(cfg)
    grouped = cfg.data.batching == "groups"
    train_set = GroupDataset(train_samples) if grouped else PairDataset(train_samples)
    val_set = PairDataset(val_samples)
    world, rank = accelerator.num_processes, accelerator.process_index
    micro_per_epoch = len(train_set) // (t.batch_size * world)
    if micro_per_epoch == 0:
        raise ValueError(f"{len(train_set)} training samples are fewer than one batch of {t.batch_size} x {world}")
    total_steps = t.max_steps if t.max_steps is not None else max(1, math.ceil(t.epochs * micro_per_epoch / t.grad_accum))

    # ---- model, optimiser, schedule --------------------------------------------------------------------
    model, processor = build_model(cfg.model)
    if cfg.init_from:
        init_weights_from(model, cfg.model, cfg.init_from)
    from reward.official.inference import input_builder

    builder = input_builder(processor, cfg.model)  # editrl's format, or the official passes (model.inference)
    collate = PairCollator(builder)  # validation pairs (and training pairs unless grouped)
    train_collate = GroupCollator(builder) if grouped else collate
    head_params = [p for n, p in model.named_parameters() if p.requires_grad and "head" in n]
    body_params = [p for n, p in model.named_parameters() if p.requires_grad and "head" not in n]
    groups = [{"params": body_params, "lr": t.lr}, {"params": head_params, "lr": t.head_lr or t.lr}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=t.lr, betas=tuple(t.betas),
                                  weight_decay=t.weight_decay)
    scheduler = get_scheduler(t.schedule, optimizer, num_warmup_steps=int(t.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    device = accelerator.device
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)

    # ---- resume (the inputs were checked above) --------------------------------------------------------
    sharded = ds_plugin is not None  # ZeRO: every rank holds (and checkpoints) its own optimiser partition
    step, elapsed_before = 0, 0.0
    resumed = resume_training(cfg.resume, store, accelerator.unwrap_model(model), optimizer, scheduler, world=world,
                              rank=rank, sharded=sharded)
    if resumed is not None:
        step, elapsed_before = int(resumed[1]["step"]), float(resumed[1].get("elapsed_s", 0.0))
    if world > 1:  # every rank must restore the same checkpoint (a fallback past a bad file could differ)
        steps = accelerator.gather(torch.tensor([step], device=device))
        if bool((steps != step).any()):
            raise RuntimeError(f"ranks resumed at different steps {steps.tolist()}: a rank's files in "
                               f"{store.root} do not load; remove the newest checkpoint and rerun")
    if resumed is not None and is_main:
        print(f"resumed from {resumed[0]} at step {step}")

    sink = MetricsSink(out_dir, wandb_project=cfg.wandb_project, config=config_to_dict(cfg)) if is_main else None
    if is_main:
        unit = "groups" if grouped else "pairs"
        print(f"reward train: {len(train_samples)} training samples" + (f" in {len(train_set)} groups" if grouped else "")
              + f", {len(val_set)} validation pairs, {total_steps} steps of {t.batch_size}x{t.grad_accum}x{world} {unit}; "
              f"{n_params / 1e6:.2f}M parameters ({n_train / 1e6:.2f}M trainable) on {device}")

    def checkpoint(at_step: int, elapsed: float) -> Path:
        return save_training_state(store, at_step, accelerator, model, processor, cfg, optimizer, scheduler,
                                   {"elapsed_s": elapsed, "total_steps": total_steps}, sharded=sharded)

    # ---- loop --------------------------------------------------------------------------------------
    # micro-batch m (global, across epochs) is a pure function of (seed, m): a resumed run starts at m = step * accum
    micro = MicroBatches(train_set, train_collate, t.batch_size, micro_per_epoch, t.seed, world, rank)
    batches = iter(torch.utils.data.DataLoader(micro, sampler=range(step * t.grad_accum, total_steps * t.grad_accum),
                                               batch_size=None, num_workers=cfg.data.num_workers,
                                               generator=torch.Generator().manual_seed(t.seed)))  # not the global RNG
    model.train()
    losses: list[float] = []
    last_ckpt: Path | None = None
    val_acc: float | None = None
    t_start = time.perf_counter()
    t_log, pairs_since_log = t_start, 0
    bar = tqdm(total=total_steps, initial=step, desc="reward train", disable=not (progress and is_main), dynamic_ncols=True)
    interrupted = False
    while step < total_steps:
        step_loss, step_acc, step_pairs = 0.0, 0.0, 0
        sigma_sum = None
        for a in range(t.grad_accum):
            batch, scores, *pairs = next(batches)                 # pairs: 2B sequences, winners then losers;
            with accelerator.accumulate(model):                   # groups: N candidates + (P, 2) pair rows
                out = model(**batch.to(device))                   # mu, log_sigma: (sequences, D)
                mu, log_sigma = out.mu.float(), out.log_sigma.float()
                if pairs:                                         # -> (2P, D): winners, then losers
                    rows = torch.cat([pairs[0][:, 0], pairs[0][:, 1]])
                    rows_d = rows.to(device)
                    mu, log_sigma, scores = mu[rows_d], log_sigma[rows_d], scores[rows]
                loss = pair_loss(cfg, mu, log_sigma, scores.to(device))
                b, weight = scores.shape[0] // 2, 1.0             # this rank's pairs; its share of the global batch
                if world > 1:  # DDP averages the ranks' gradients: weigh each rank's mean by its pairs (groups vary)
                    b_all = int(accelerator.reduce(torch.tensor([b], device=device), "sum"))
                    weight = b * world / b_all
                    loss = loss * weight                          # the mean over ranks is the global pairs' mean
                accelerator.backward(loss)
                if accelerator.sync_gradients and t.max_grad_norm > 0:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():                                 # loss, accuracy, sigma of the global batch
                s = aggregate_scores(mu, log_sigma, cfg.model.aggregation)   # (2B,)
                acc = (s[:b] > s[b:]).float().mean().view(1)
                stats = torch.cat([loss.detach().view(1), acc * weight, log_sigma.exp().mean(0) * weight])
                if world > 1:
                    stats = accelerator.reduce(stats, "mean")
                sigma_sum = stats[2:] if sigma_sum is None else sigma_sum + stats[2:]  # (D,)
            step_loss += float(stats[0]) / t.grad_accum
            step_acc += float(stats[1]) / t.grad_accum
            step_pairs += b if world == 1 else b_all
        scheduler.step()
        step += 1
        losses.append(step_loss)
        pairs_since_log += step_pairs
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.4f}", acc=f"{step_acc:.2f}")
        elapsed = elapsed_before + time.perf_counter() - t_start

        # ---- log -----------------------------------------------------------------------------------
        if sink is not None and (step % t.log_every == 0 or step == total_steps):
            now = time.perf_counter()
            row = {"train/loss": step_loss, "train/acc": step_acc, "train/lr": scheduler.get_last_lr()[0],
                   "train/pairs_per_s": pairs_since_log / max(now - t_log, 1e-9), "train/elapsed_s": elapsed}
            if t.max_grad_norm > 0:
                row["train/grad_norm"] = float(grad_norm)
            for d, v in enumerate((sigma_sum / t.grad_accum).tolist()):
                row[f"train/sigma_mean_d{d}"] = v
            sink.log(row, step=step)
            t_log, pairs_since_log = now, 0

        # ---- validate ------------------------------------------------------------------------------
        out_of_time = t.time_budget_minutes is not None and elapsed >= 60.0 * t.time_budget_minutes
        if world > 1 and t.time_budget_minutes is not None:  # the ranks' clocks differ: stop together
            out_of_time = bool(accelerator.reduce(torch.tensor([float(out_of_time)], device=device), "sum") > 0)
        finishing = step == total_steps or out_of_time or step == stop_at_step
        if len(val_set) and ((t.eval_every and step % t.eval_every == 0) or finishing):
            val_acc, val_margin = pairwise_accuracy_on(accelerator.unwrap_model(model), val_set, collate,
                                                       2 * t.batch_size, cfg.model.aggregation, device)
            if sink is not None:
                sink.log({"val/acc": val_acc, "val/margin": val_margin}, step=step)
            if is_main:
                bar.write(f"step {step}: val acc {val_acc:.4f} (loss {step_loss:.4f})")

        # ---- checkpoint ----------------------------------------------------------------------------
        if (t.save_every and step % t.save_every == 0) or finishing:
            last_ckpt = checkpoint(step, elapsed)
        if out_of_time or step == stop_at_step:
            interrupted = step == stop_at_step and step < total_steps
            if is_main and out_of_time:
                print(f"time budget of {t.time_budget_minutes} min reached at step {step}/{total_steps}")
            break
    bar.close()

    # ---- final model + training curve ------------------------------------------------------------------
    final_dir = None
    if is_main and not interrupted:
        from reward.model.editreward import save_checkpoint

        final_dir = out_dir / "final"
        save_checkpoint(accelerator.unwrap_model(model), processor, cfg.model, final_dir,
                        extra={"train_step": step, "val_accuracy": val_acc, "loss": cfg.data.loss})
    if sink is not None:
        sink.close()
        plot_training_curve(out_dir / "metrics.jsonl", out_dir / "training_curve.png")
    return TrainResult(out_dir=out_dir, final_dir=final_dir, last_checkpoint=last_ckpt, step=step, losses=losses,
                       val_accuracy=val_acc)


def plot_training_curve(metrics_path: Path, png_path: Path, accuracy: str = "pairwise accuracy") -> Path | None:
    """Training loss and accuracy, and validation accuracy (named ``accuracy``), against the step (PNG, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from editrl.report import save_figure

    from editrl.metrics import read_metrics

    if not metrics_path.is_file():
        return None
    rows = read_metrics(metrics_path)
    tr = [r for r in rows if r.get("train/loss") is not None]
    va = [r for r in rows if r.get("val/acc") is not None]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot([r["step"] for r in tr], [r["train/loss"] for r in tr], label="train loss")
    ax1.set_xlabel("step"), ax1.set_ylabel("loss"), ax1.legend()
    ax2.plot([r["step"] for r in tr], [r["train/acc"] for r in tr], label="train acc (batch)", alpha=0.6)
    ax2.plot([r["step"] for r in va], [r["val/acc"] for r in va], "o-", label="val acc")
    ax2.set_xlabel("step"), ax2.set_ylabel(accuracy), ax2.set_ylim(0, 1), ax2.legend()
    return save_figure(fig, png_path, dpi=100)


__all__ = ["TrainResult", "train", "build_model", "pair_loss", "prepare_pairs", "pairwise_accuracy_on",
           "resume_training", "plot_training_curve"]
