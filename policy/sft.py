"""Flow-matching supervised fine-tuning of an editor on (source, instruction, target) rows.

The same loop trains the tiny editworld editor from scratch and fine-tunes a real editor on a real manifest: it
needs only the ``Editor`` interface plus ``encode_targets(targets, cond)`` (target images -> the latents the
sampler ends at). For each row, ``sigma`` is drawn (uniform or logit-normal, then the editor's shift),
``x_sigma = (1 - sigma) x_target + sigma noise`` and the loss is ``mean((v(x_sigma, sigma) - (noise - x_target))^2)``.

Resume is exact: the batch of step k is a function of (data seed, k) and the noise / sigmas of step k of
(seed, k), so a checkpoint needs only weights, optimiser, EMA and the step (all in safetensors + JSON).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from editrl.checkpoint import (CheckpointStore, load_tensors, optimizer_from_tensors, optimizer_tensors, read_state,
                               step_name)
from policy.losses import noised
from policy.sft_config import SFTConfig


# ============================================================================================ data
class EditworldBatches:
    """Fresh editworld tasks: row i of step k is task ``sample_task(rng([seed, k * B + i]))``."""

    def __init__(self, seed: int, batch_size: int, size: int) -> None:
        from editworld.tasks import HELD_OUT_SEED

        if seed == HELD_OUT_SEED:
            raise ValueError(f"data.seed {seed} is the held-out evaluation seed")
        self.seed, self.batch_size, self.size = seed, batch_size, size

    def batch(self, step: int) -> tuple[list, list[str], list]:
        from editworld.tasks import sample_task

        tasks = [sample_task(np.random.default_rng([self.seed, step * self.batch_size + i]), self.size)
                 for i in range(self.batch_size)]
        return ([t.source_image(self.size) for t in tasks], [t.instruction for t in tasks],
                [t.target_image(self.size) for t in tasks])


class ManifestBatches:
    """Rows of a ``manifest.jsonl`` with ``source``, ``instruction``, ``target`` (image paths relative to it),
    loaded once; step k takes consecutive slices of a per-epoch permutation seeded by (seed, epoch)."""

    def __init__(self, manifest: str | Path, seed: int, batch_size: int) -> None:
        from editrl.io import DataError, iter_jsonl, load_row_image, text_problem, warn_rejects

        manifest = Path(manifest)
        self.rows: list[tuple[Any, str, Any]] = []
        rejects: list[DataError] = []
        for line, row in iter_jsonl(manifest, required=("source", "instruction", "target"), rejects=rejects):
            try:
                problem = text_problem(row["instruction"])
                if problem is not None:
                    raise DataError(manifest, problem, line=line, field="instruction")
                images = [load_row_image(manifest, line, row, f) for f in ("source", "target")]
            except DataError as err:
                rejects.append(err)
                continue
            self.rows.append((images[0], row["instruction"], images[1]))
        if not self.rows:
            raise DataError(manifest, "manifest holds no usable rows"
                            + (f" (first reject: {rejects[0]})" if rejects else ""))
        warn_rejects(manifest, rejects, len(self.rows), "training rows")
        self.seed, self.batch_size = seed, batch_size

    def batch(self, step: int) -> tuple[list, list[str], list]:
        n = len(self.rows)
        picked = []
        for j in range(step * self.batch_size, (step + 1) * self.batch_size):
            epoch, pos = divmod(j, n)
            picked.append(self.rows[np.random.default_rng([self.seed, epoch]).permutation(n)[pos]])
        return [r[0] for r in picked], [r[1] for r in picked], [r[2] for r in picked]


def make_batches(cfg: SFTConfig) -> EditworldBatches | ManifestBatches:
    """The data stream the config names."""
    if cfg.data.source == "editworld":
        return EditworldBatches(cfg.data.seed, cfg.train.batch_size, cfg.data.image_size)
    return ManifestBatches(cfg.data.source, cfg.data.seed, cfg.train.batch_size)


# ============================================================================================ model
def build_editor(cfg: SFTConfig) -> Any:
    """A fresh tiny editor (``editor.spec: new-tiny``) or one loaded from a spec / local folder."""
    if cfg.editor.spec == "new-tiny":
        from rollout.tiny_editor import TinyEditor

        return TinyEditor.from_config(cfg.editor.tiny, seed=cfg.seed)
    from rollout.registry import load_editor

    return load_editor(cfg.editor.spec, **cfg.editor.load_kwargs)


def trained_module(editor: Any) -> torch.nn.Module:
    """Everything SFT trains: ``editor.model`` when the editor has one (tiny: transformer + text encoder), else
    ``editor.transformer``."""
    module = getattr(editor, "model", None)
    return module if isinstance(module, torch.nn.Module) else editor.transformer


def target_latents(editor: Any, targets: list, cond: Any) -> torch.Tensor:
    """Target images in the editor's latent space."""
    encode = getattr(editor, "encode_targets", None)
    if encode is None:
        raise TypeError(f"{type(editor).__name__} has no encode_targets(targets, cond): SFT cannot map targets to "
                        "latents for it")
    return encode(targets, cond)


def sample_sigmas(n: int, how: str, shift: float, generator: torch.Generator) -> torch.Tensor:
    """Training noise levels in (0, 1): uniform or logit-normal, then the schedule's static shift."""
    if how == "uniform":
        u = torch.rand(n, generator=generator)
    else:
        u = torch.sigmoid(torch.randn(n, generator=generator))
    u = u.clamp(1e-4, 1 - 1e-4)
    return shift * u / (1 + (shift - 1) * u)


def flow_matching_loss(editor: Any, sources: list, instructions: list[str], targets: list,
                       generator: torch.Generator, timestep_sampling: str = "uniform") -> torch.Tensor:
    """Mean squared error between the predicted and the true velocity ``noise - x_target``."""
    cond = editor.prepare(sources, instructions)
    x1 = target_latents(editor, targets, cond).float()
    noise = torch.randn(x1.shape, generator=generator).to(x1.device)
    shift = float(getattr(getattr(editor, "config", None), "shift", 1.0))
    sigma = sample_sigmas(x1.shape[0], timestep_sampling, shift, generator).to(x1.device)
    x_t = noised(x1, noise, sigma)
    v = editor.velocity(x_t, sigma, cond).float()
    return ((v - (noise - x1)) ** 2).mean()


def lr_factor(step: int, cfg: SFTConfig) -> float:
    """Multiplier of the peak learning rate at (0-based) optimiser step ``step``."""
    tr = cfg.train
    if tr.warmup_steps > 0 and step < tr.warmup_steps:
        return (step + 1) / tr.warmup_steps
    if tr.schedule == "constant":
        return 1.0
    span = max(1, tr.max_steps - tr.warmup_steps)
    progress = min(1.0, (step - tr.warmup_steps) / span)
    return tr.min_lr_ratio + (1 - tr.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay after (0-based) optimiser step ``step``: ``min(decay, (1 + step) / (10 + step))``.

    The warm-up keeps the random initial weights out of the average: with a constant 0.999 they would still
    weigh 0.999**1500 = 22% after 1,500 steps.
    """
    return min(decay, (1 + step) / (10 + step))


def step_generator(seed: int, step: int) -> torch.Generator:
    """Noise / sigma randomness owned by (seed, step): independent of history, so resume is exact."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7919 + 17) % (2**63 - 1))


# ============================================================================================ checkpoints
def save_checkpoint(store: CheckpointStore, step: int, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    ema: dict[str, torch.Tensor] | None) -> Path:
    """``out/checkpoints/step_XXXXXX``: weights, optimiser, EMA (safetensors) and state.json, written atomically."""
    opt_tensors, opt_meta = optimizer_tensors(optimizer.state_dict())
    tensors = {"model.safetensors": module.state_dict(), "optimizer.safetensors": opt_tensors}
    if ema is not None:
        tensors["ema.safetensors"] = ema
    return store.save(step, {"optimizer": opt_meta}, tensors)


def load_checkpoint(path: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer
                    ) -> tuple[int, dict[str, torch.Tensor] | None]:
    """Restore weights and optimiser in place; returns ``(step, ema or None)``."""
    from editrl.io import DataError

    state = read_state(path)
    try:
        module.load_state_dict(load_tensors(path / "model.safetensors"))
        optimizer.load_state_dict(optimizer_from_tensors(load_tensors(path / "optimizer.safetensors"),
                                                         state["optimizer"]))
    except (KeyError, RuntimeError) as err:
        raise DataError(path, f"cannot resume from this checkpoint: {err}") from err
    ema = load_tensors(path / "ema.safetensors") if (path / "ema.safetensors").is_file() else None
    return int(state["step"]), ema


# ============================================================================================ training
def train_sft(cfg: SFTConfig) -> dict[str, Any]:
    """Run (or resume) SFT; writes metrics, checkpoints, ``final/`` (the editor) and ``loss.png`` under ``cfg.out``.

    Returns a summary: steps done, last loss, seconds, and the held-out oracle means when ``eval.num_tasks > 0``.
    """
    from accelerate import Accelerator
    from tqdm import tqdm

    from editrl.config import config_to_dict, save_config
    from editrl.metrics import MetricsSink

    tr = cfg.train
    if tr.threads > 0:
        torch.set_num_threads(tr.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    editor = build_editor(cfg)
    module = trained_module(editor)
    module.to(accelerator.device)
    module.train()
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=tr.learning_rate, betas=tuple(tr.adam_betas), weight_decay=tr.weight_decay)
    batches = make_batches(cfg)

    step, ema = 0, None
    store = CheckpointStore(out, keep=cfg.keep_checkpoints)
    loaded = store.load_latest(lambda p: load_checkpoint(p, module, optimizer))
    if loaded is not None:
        ckpt, (step, ema) = loaded
        print(f"resumed from {ckpt} (step {step})")
    if tr.ema_decay > 0 and ema is None:
        ema = {k: v.detach().float().cpu().clone() for k, v in module.state_dict().items()}

    t_start = time.time()
    losses: list[float] = []
    last_loss = float("nan")
    bar = tqdm(total=tr.max_steps, initial=step, desc="sft", disable=not cfg.progress, dynamic_ncols=True)
    with MetricsSink(out, wandb_project=cfg.wandb_project, config=config_to_dict(cfg)) as sink:
        while step < tr.max_steps:
            if tr.time_budget_minutes > 0 and time.time() - t_start > tr.time_budget_minutes * 60:
                print(f"time budget of {tr.time_budget_minutes} min reached at step {step}")
                break
            for group in optimizer.param_groups:
                group["lr"] = tr.learning_rate * lr_factor(step, cfg)
            sources, instructions, targets = batches.batch(step)
            loss = flow_matching_loss(editor, sources, instructions, targets, step_generator(cfg.seed, step),
                                      tr.timestep_sampling)
            accelerator.backward(loss)
            if accelerator.num_processes > 1:
                for p in params:
                    if p.grad is not None:
                        p.grad = accelerator.reduce(p.grad, reduction="mean")
            grad_norm = torch.nn.utils.clip_grad_norm_(params, tr.max_grad_norm if tr.max_grad_norm > 0 else
                                                       float("inf"))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                decay = ema_decay_at(step, tr.ema_decay)
                with torch.no_grad():
                    for k, v in module.state_dict().items():
                        ema[k].mul_(decay).add_(v.detach().float().cpu(), alpha=1 - decay)
            step += 1
            last_loss = float(loss.detach())
            if not math.isfinite(last_loss):
                raise FloatingPointError(f"SFT loss is {last_loss} at step {step}")
            losses.append(last_loss)
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.4f}")
            if step % cfg.log_every == 0 or step == tr.max_steps:
                sink.log({"loss": float(np.mean(losses)), "lr": optimizer.param_groups[0]["lr"],
                          "grad_norm": float(grad_norm), "elapsed_s": time.time() - t_start}, step=step)
                losses = []
            if cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0:
                save_checkpoint(store, step, module, optimizer, ema)
        bar.close()
        newest = store.latest()
        if newest is None or newest.name != step_name(step):
            save_checkpoint(store, step, module, optimizer, ema)

        final_editor = _with_ema(editor, module, ema)
        module.eval()
        final_dir = out / "final"
        if hasattr(final_editor, "save_pretrained"):
            final_editor.save_pretrained(final_dir)
            if cfg.save_to:
                final_editor.save_pretrained(cfg.save_to)
        summary: dict[str, Any] = {"steps": step, "last_loss": last_loss, "seconds": round(time.time() - t_start, 1),
                                   "final": str(final_dir)}
        if cfg.eval.num_tasks > 0:
            from policy.evaluate import save_grid
            from rollout.held_out import evaluate_editor

            rows, tasks, edits = evaluate_editor(final_editor, cfg.eval.num_tasks, cfg.eval.num_steps,
                                                 cfg.eval.batch_size, seed=cfg.seed, size=cfg.data.image_size)
            save_grid(tasks[:16], edits[:16], out / "eval_grid.png", size=cfg.data.image_size)
            sink.log({f"eval/{who}/{d}": v for who, dims in rows.items() for d, v in dims.items()}, step=step)
            summary["eval"] = rows
    plot_loss(out / "metrics.jsonl", out / "loss.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _with_ema(editor: Any, module: torch.nn.Module, ema: dict[str, torch.Tensor] | None) -> Any:
    """The editor carrying the EMA weights (loaded into the trained module in place) when EMA is on."""
    if ema is not None:
        module.load_state_dict({k: v.to(module.state_dict()[k].dtype) for k, v in ema.items()})
    return editor


def plot_loss(metrics_path: Path, png: Path) -> Path | None:
    """Loss against step (log scale) from ``metrics.jsonl``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from editrl.report import save_figure

    from editrl.metrics import read_metrics

    rows = [r for r in read_metrics(metrics_path) if r.get("loss") is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows])
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    return save_figure(fig, png, dpi=100)
