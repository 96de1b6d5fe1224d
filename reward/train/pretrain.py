"""Scene-grounded pretraining of the tiny reward backbone (``editrl reward pretrain``): stage 0 of the real path.

A released EditReward starts from a VLM that pretraining taught to read images against text; the tiny backbone
starts from nothing. This stage trains the same tiny Qwen2.5-VL, as ``Qwen2_5_VLForConditionalGeneration``, with
the next-token loss on the answers of scene-grounded questions about (source, edited) pairs
(``editworld.grounding``), fed exactly as the reward feeds them (a two-frame clip through the video path). It
writes a transformers checkpoint with its processor; a reward config then names that folder as ``model.backbone``
and fine-tunes it like any local VLM (the LM head is dropped on load).

    setup -> model, optimiser, schedule -> resume -> loop (batch of fresh examples, loss, step, log, validate,
    checkpoint) -> final/ (save_pretrained + processor) + training curve

Example ``i`` of step ``s`` is a pure function of (seed, s, i), so a resumed run sees the examples it would have
seen; checkpoints (model, optimiser, RNG, step) go through ``editrl.checkpoint`` and hold no pickles.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from editrl.checkpoint import (CheckpointStore, load_tensors, optimizer_from_tensors, optimizer_tensors, read_state,
                               restore_rng, rng_state)
from editrl.config import config_to_dict, save_config
from editrl.metrics import MetricsSink
from reward.train.pretrain_config import PretrainConfig

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
VAL_STREAM = 1_000_000  # seed offset of the validation examples (training streams use the run's seed)


@dataclass
class PretrainResult:
    """Where a finished (or stopped) run left its backbone, and its last validation."""

    out_dir: Path
    final_dir: Path
    step: int
    val: dict[str, float]


# ---- batches -----------------------------------------------------------------------------------------

def example_batch(processor: Any, examples: list[Any], pixel_area: int) -> tuple[Any, torch.Tensor]:
    """Processor batch of ``prompt <clip(source, edited)> answer<|im_end|>`` and its labels: the answer tokens
    (everything after the clip's ``<|vision_end|>``), -100 elsewhere."""
    from PIL import Image

    from reward.model.inputs import VIDEO_PLACEHOLDER, video_kwargs

    texts = [e.prompt + VIDEO_PLACEHOLDER + e.answer + "<|im_end|>" for e in examples]
    clips = [[Image.fromarray(e.source), Image.fromarray(e.edited)] for e in examples]
    size = {"shortest_edge": pixel_area, "longest_edge": pixel_area}
    batch = processor(text=texts, videos=clips, padding=True, padding_side="right", return_tensors="pt",
                      videos_kwargs=video_kwargs(processor.video_processor, size))
    ids = batch["input_ids"]
    vend = processor.tokenizer.convert_tokens_to_ids("<|vision_end|>")
    after = (ids == vend).long().cumsum(1) > 0
    answer = after & (ids != vend) & batch["attention_mask"].bool()
    return batch, torch.where(answer, ids, torch.full_like(ids, -100))


def answer_loss(logits: torch.Tensor, labels: torch.Tensor, mean: str = "token") -> torch.Tensor:
    """Next-token cross-entropy of the answer tokens (token t predicted at t - 1), averaged over all of them
    (``mean="token"``) or over each example's answer and then over examples (``mean="example"``)."""
    gold = labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), gold.clamp(min=0),
                                            reduction="none")
    mask = (gold != -100).float()
    if mean == "token":
        return (nll * mask).sum() / mask.sum().clamp(min=1)
    return ((nll * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()


def answer_scores(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example (correct answer tokens, answer tokens) under teacher forcing: token t is predicted at t - 1."""
    pred, gold = logits[:, :-1].argmax(-1), labels[:, 1:]
    mask = gold != -100
    return ((pred == gold) & mask).sum(1), mask.sum(1)


@torch.no_grad()
def validate(model: Any, processor: Any, cfg: PretrainConfig, examples: list[Any]) -> dict[str, float]:
    """Mean answer loss, answer-token accuracy, and the share of "was it done?" answers exactly right (what greedy
    decoding would say) over the fixed validation examples."""
    model.eval()
    losses, right, total, verify_right, verify_n = [], 0, 0, 0, 0
    for i in range(0, len(examples), cfg.train.batch_size):
        chunk = examples[i:i + cfg.train.batch_size]
        batch, labels = example_batch(processor, chunk, cfg.model.pixel_area)
        out = model(**batch)
        losses.append(float(answer_loss(out.logits, labels, "token")) * len(chunk))
        ok, n = answer_scores(out.logits, labels)
        right, total = right + int(ok.sum()), total + int(n.sum())
        for e, k, m in zip(chunk, ok.tolist(), n.tolist()):
            if e.kind == "verify":
                verify_right, verify_n = verify_right + int(k == m), verify_n + 1
    model.train()
    return {"val/loss": sum(losses) / len(examples), "val/acc": right / max(total, 1),
            "val/verify_exact": verify_right / max(verify_n, 1)}


# ---- checkpoints -------------------------------------------------------------------------------------

def save_checkpoint(store: CheckpointStore, step: int, model: Any, optimizer: Any, scheduler: Any,
                    elapsed: float) -> Path:
    """Model, optimiser and RNG as safetensors, step and schedule in state.json, committed atomically."""
    opt_tensors, opt_meta = optimizer_tensors(optimizer.state_dict())
    rng_tensors, rng_meta = rng_state()
    state = {"elapsed": elapsed, "scheduler": scheduler.state_dict(), "optimizer": opt_meta, "rng": rng_meta}
    model_tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    return store.save(step, state, {MODEL_FILE: model_tensors, OPTIMIZER_FILE: opt_tensors, RNG_FILE: rng_tensors})


def load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any) -> tuple[int, float]:
    """Restore a ``save_checkpoint`` folder into the live objects; returns (step, elapsed seconds)."""
    state = read_state(path)
    model.load_state_dict(load_tensors(path / MODEL_FILE))
    optimizer.load_state_dict(optimizer_from_tensors(load_tensors(path / OPTIMIZER_FILE), state["optimizer"]))
    scheduler.load_state_dict(state["scheduler"])
    restore_rng(load_tensors(path / RNG_FILE), state["rng"])
    return int(state["step"]), float(state.get("elapsed", 0.0))


def write_backbone(model: Any, processor: Any, cfg: PretrainConfig, out: Path, summary: dict[str, Any]) -> Path:
    """``out``: a transformers checkpoint (config.json, model.safetensors) with its processor, written to a staging
    folder and renamed into place, so a reader never sees half of it."""
    import json

    tmp = out.with_name(f".staging_{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    processor.save_pretrained(str(tmp))
    save_config(cfg, tmp / "pretrain_config.yaml")
    (tmp / "pretrain_summary.json").write_text(json.dumps(summary, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


# ---- the run -----------------------------------------------------------------------------------------

def pretrain(cfg: PretrainConfig, progress: bool = True) -> PretrainResult:
    """Run (or resume) a pretraining run; returns where its backbone is."""
    from tqdm.auto import tqdm
    from transformers import Qwen2_5_VLForConditionalGeneration, get_scheduler

    from editworld.grounding import grounded_example
    from reward.model.backbone import build_tiny, build_tiny_processor
    from reward.train.trainer import plot_training_curve

    # -- setup
    if cfg.model.backbone != "tiny":
        raise ValueError(f"model.backbone must be 'tiny' (pretraining builds the tiny backbone), got "
                         f"{cfg.model.backbone!r}")
    if cfg.model.pixel_area < cfg.data.image_size ** 2:
        raise ValueError(f"model.pixel_area {cfg.model.pixel_area} is smaller than data.image_size^2 "
                         f"{cfg.data.image_size ** 2}")
    t = cfg.train
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "config.yaml")
    torch.manual_seed(t.seed)

    # -- model, optimiser, schedule
    processor = build_tiny_processor(out_dir / "processor", cfg.model)
    model = build_tiny(Qwen2_5_VLForConditionalGeneration, cfg.model, processor)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    scheduler = get_scheduler(t.schedule, optimizer, num_warmup_steps=int(t.warmup_ratio * t.max_steps),
                              num_training_steps=t.max_steps)

    # -- resume
    store = CheckpointStore(out_dir, keep=t.keep_checkpoints)
    step, elapsed = 0, 0.0
    if cfg.resume is not None:
        def load(path: Path) -> tuple[int, float]:
            return load_checkpoint(path, model, optimizer, scheduler)

        found = store.load_latest(load) if cfg.resume == "auto" else (Path(cfg.resume), load(Path(cfg.resume)))
        if found is not None:
            path, (step, elapsed) = found
            print(f"resumed from {path} at step {step}")
    val_examples = [grounded_example(t.seed + VAL_STREAM, i, cfg.data.image_size, cfg.data.describe_share)
                    for i in range(cfg.data.val_examples)]

    # -- loop
    sink = MetricsSink(out_dir, wandb_project=cfg.wandb_project, run_name=out_dir.name, config=config_to_dict(cfg))
    bar = tqdm(total=t.max_steps, initial=step, desc="reward pretrain", disable=not progress, dynamic_ncols=True)
    val: dict[str, float] = {}
    start = time.time() - elapsed
    try:
        while step < t.max_steps:
            examples = [grounded_example(t.seed, step * t.batch_size + i, cfg.data.image_size,
                                         cfg.data.describe_share) for i in range(t.batch_size)]
            batch, labels = example_batch(processor, examples, cfg.model.pixel_area)
            out = model(**batch)
            loss_t = answer_loss(out.logits, labels, t.loss_mean)
            optimizer.zero_grad(set_to_none=True)
            loss_t.backward()
            loss = loss_t.item()
            grad_norm = (torch.nn.utils.clip_grad_norm_(model.parameters(), t.max_grad_norm) if t.max_grad_norm > 0
                         else torch.tensor(float("nan")))
            optimizer.step()
            scheduler.step()
            step += 1
            bar.update(1)
            if not math.isfinite(loss):
                raise FloatingPointError(f"pretraining loss is {loss} at step {step}; lower train.lr")
            if step % t.log_every == 0 or step == 1:
                ok, n = answer_scores(out.logits.detach(), labels)
                sink.log({"train/loss": loss, "train/acc": float(ok.sum() / n.sum().clamp(min=1)),
                          "train/lr": scheduler.get_last_lr()[0], "train/grad_norm": float(grad_norm),
                          "time_s": time.time() - start}, step=step)
                bar.set_postfix(loss=f"{loss:.3f}")
            out_of_time = t.time_budget_minutes is not None and time.time() - start >= 60.0 * t.time_budget_minutes
            last = step >= t.max_steps or out_of_time
            if last or (t.eval_every and step % t.eval_every == 0):
                val = validate(model, processor, cfg, val_examples)
                sink.log(val, step=step)
            if last or (t.save_every and step % t.save_every == 0):
                save_checkpoint(store, step, model, optimizer, scheduler, time.time() - start)
            if out_of_time:
                print(f"time budget of {t.time_budget_minutes} min reached at step {step}/{t.max_steps}")
                break
    finally:
        bar.close()
        sink.close()
    if not val:
        val = validate(model, processor, cfg, val_examples)
    summary = {"step": step, "minutes": round((time.time() - start) / 60, 2), **val}
    final_dir = write_backbone(model, processor, cfg, out_dir / "final", summary)
    plot_training_curve(out_dir / "metrics.jsonl", out_dir / "training_curve.png", accuracy="answer-token accuracy")
    return PretrainResult(out_dir=out_dir, final_dir=final_dir, step=step, val=val)


__all__ = ["PretrainResult", "answer_loss", "answer_scores", "example_batch", "pretrain", "validate"]
