"""Resumable reward-training checkpoints, written and found through the shared ``editrl.checkpoint`` store.

``OUT/checkpoints/step_XXXXXX/`` is also a reward model folder (``save_checkpoint``: weights, backbone config,
processor, ``reward_config.yaml``), so ``init_from``, ``reward eval --checkpoint`` and the scorer load it like
any model. Beside the model it holds the optimiser state (``optimizer.safetensors``; under ZeRO every rank's own
partition, ``optimizer-rankR.safetensors`` with its metadata in ``optimizer-rankR.json``), the RNG states
(``rng.safetensors``) and ``state.json`` (step, elapsed time, scheduler, optimiser and RNG metadata, file
manifest), which rank 0 writes last, after every rank has written its files. Nothing is pickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from editrl.checkpoint import (CheckpointStore, load_tensors, optimizer_from_tensors, optimizer_tensors, read_state,
                               restore_rng, rng_state, save_tensors, step_name)
from editrl.config import ConfigError
from editrl.io import DataError

OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"


def optimizer_chain(optimizer: Any) -> list[Any]:
    """accelerate's wrapper -> (DeepSpeed's wrapper -> ZeRO optimiser ->) the torch optimiser, outermost first.

    Under ZeRO the innermost optimiser's parameters are this rank's flat fp32 partitions, so its state is plain
    tensors that safetensors can hold (DeepSpeed's own checkpoints are pickles, which editrl never writes or reads)."""
    chain = [optimizer]
    while hasattr(chain[-1], "optimizer"):
        chain.append(chain[-1].optimizer)
    return chain


def optimizer_file(rank: int, sharded: bool) -> str:
    """The optimiser file a rank reads and writes: its own partition under ZeRO, else the one rank 0 writes."""
    return f"optimizer-rank{rank}.safetensors" if sharded and rank > 0 else OPTIMIZER_FILE


def save_training_state(store: CheckpointStore, step: int, accelerator: Any, model: torch.nn.Module, processor: Any,
                        cfg: Any, optimizer: Any, scheduler: Any, state: dict[str, Any], *, sharded: bool) -> Path:
    """Checkpoint ``step`` on every rank (collective): the model, optimiser, RNG, scheduler and ``state``."""
    from reward.model.editreward import save_checkpoint

    rank, is_main = accelerator.process_index, accelerator.is_main_process
    if is_main:
        store.staging(step)  # empty a stale staging folder before any rank writes into it
    accelerator.wait_for_everyone()
    folder = store.staging(step, clear=False)
    meta: dict[str, Any] = {}
    if is_main or sharded:
        tensors, meta = optimizer_tensors(optimizer_chain(optimizer)[-1].state_dict())
        save_tensors(tensors, folder / optimizer_file(rank, sharded))
        if not is_main:
            (folder / f"optimizer-rank{rank}.json").write_text(json.dumps(meta))
    if is_main:
        save_checkpoint(accelerator.unwrap_model(model), processor, cfg.model, folder, extra={"train_step": step, "loss": cfg.data.loss})
        rng_tensors, rng_meta = rng_state()
        save_tensors(rng_tensors, folder / RNG_FILE)
    accelerator.wait_for_everyone()  # every rank's files are in the staging folder
    if is_main:
        store.commit(step, {**state, "world_size": accelerator.num_processes, "sharded_optimizer": sharded,
                            "optimizer": meta, "scheduler": scheduler.state_dict(), "rng": rng_meta})
    accelerator.wait_for_everyone()
    return store.root / step_name(step)


def check_compatible(path: Path, world: int, sharded: bool) -> None:
    """A ZeRO checkpoint resumes only with as many processes as wrote it (each holds one optimiser partition)."""
    state = read_state(path)
    written_world, written_sharded = state.get("world_size", 1), state.get("sharded_optimizer", False)
    if (sharded or written_sharded) and (written_world, written_sharded) != (world, sharded):
        raise ConfigError(f"{path}: written by {written_world} process(es) with "
                          f"{'a ZeRO-partitioned' if written_sharded else 'an unpartitioned'} optimiser; this run has "
                          f"{world} with {'ZeRO' if sharded else 'no ZeRO'}: resume with the same launch")


def load_training_state(path: str | Path, model: torch.nn.Module, optimizer: Any, scheduler: Any, *, rank: int = 0,
                        sharded: bool = False) -> dict[str, Any]:
    """Restore what ``save_training_state`` wrote into live objects; returns the recorded state (step, ...).

    Raises DataError naming the folder when it is not a complete checkpoint or a file does not load."""
    from reward.model.editreward import load_checkpoint

    path = Path(path)
    state = read_state(path)  # DataError unless state.json and every file it lists are there, at their sizes
    loaded, _, _ = load_checkpoint(path)  # into a fresh model first: a bad file leaves the live one untouched
    name = optimizer_file(rank, sharded)
    if not (path / name).is_file():
        raise DataError(path, f"{name} missing (checkpoint written with fewer processes?)")
    meta = state["optimizer"] if name == OPTIMIZER_FILE else json.loads((path / f"optimizer-rank{rank}.json").read_text())
    optimizer_state = optimizer_from_tensors(load_tensors(path / name), meta)
    rng = load_tensors(path / RNG_FILE)
    model.load_state_dict(loaded.state_dict())
    chain = optimizer_chain(optimizer)
    chain[-1].load_state_dict(optimizer_state)
    for layer in chain:  # ZeRO keeps fp32 master partitions: copy them from the loaded weights
        if hasattr(layer, "refresh_fp32_params"):
            layer.refresh_fp32_params()
    scheduler.load_state_dict(state["scheduler"])
    restore_rng(rng, state["rng"])
    return state


def resume_training(spec: str | None, store: CheckpointStore, model: torch.nn.Module, optimizer: Any, scheduler: Any,
                    *, world: int = 1, rank: int = 0, sharded: bool = False) -> tuple[Path, dict[str, Any]] | None:
    """Restore the checkpoint ``spec`` names: a folder; ``"auto"``, the newest complete checkpoint of the run that
    loads (a newer torn one is skipped with a warning, one that fails to load falls back to the one before); or
    None, a fresh run. Returns (folder, recorded state), or None when nothing was restored."""
    if not spec:
        return None

    def load(path: Path) -> dict[str, Any]:
        return load_training_state(path, model, optimizer, scheduler, rank=rank, sharded=sharded)

    if spec != "auto":
        check_compatible(Path(spec), world, sharded)
        return Path(spec), load(Path(spec))
    newest = store.latest()  # warns about each newer torn checkpoint it skips
    if newest is None:
        return None
    check_compatible(newest, world, sharded)
    return store.load_latest(load)


# ---- what a run trains on ------------------------------------------------------------------------------
# Settings a resumed run may change: its length, cadence, logging and threads (and the per-process batch, as long
# as the global batch stays: a checkpoint resumes across world sizes), not what the weights learn from.
RESUMABLE_CHANGES = ("out_dir", "resume", "wandb_project", "data.num_workers", "data.max_val_pairs",
                     "train.batch_size", "train.max_steps", "train.epochs", "train.time_budget_minutes",
                     "train.log_every", "train.eval_every", "train.save_every", "train.keep_checkpoints",
                     "train.num_threads", "model.gradient_checkpointing")


def training_fingerprint(cfg: Any, world: int = 1) -> dict[str, Any]:
    """What a reward run's checkpoints depend on (editrl.fingerprint): the pair files, the backbone and
    ``init_from`` checkpoints, the global batch, and every setting except ``RESUMABLE_CHANGES``."""
    from editrl.config import config_to_dict
    from editrl.fingerprint import flatten, make_fingerprint
    from reward.train.data import pair_file

    settings = {k: v for k, v in flatten(config_to_dict(cfg)).items()
                if not any(k == free or k.startswith(free + ".") for free in RESUMABLE_CHANGES)}
    settings["train.global_batch"] = cfg.train.batch_size * world
    d = cfg.data
    files: dict[str, Any] = {"training pairs": pair_file(d.train), "validation pairs": d.val and pair_file(d.val),
                             "backbone": None if cfg.model.backbone == "tiny" else cfg.model.backbone,
                             "init_from checkpoint": cfg.init_from}
    files.update({f"extra training pairs {i + 1}": pair_file(x) for i, x in enumerate(d.extra_train)})
    return make_fingerprint(files, settings)


def check_training_inputs(cfg: Any, store: CheckpointStore, world: int = 1, write: bool = True) -> list[str]:
    """Refuse to resume (``cfg.resume``) a checkpoint trained on other inputs than this run's (a ConfigError
    naming them and how to start over); then store this run's fingerprint in ``out_dir`` (``write``: rank 0).
    An explicit ``resume=FOLDER`` is checked against the run folder that holds it. Returns notes for the log."""
    from editrl.fingerprint import check_resume, read_fingerprint, write_fingerprint

    fingerprint = training_fingerprint(cfg, world)
    notes: list[str] = []
    if cfg.resume:
        folder = store.root.parent if cfg.resume == "auto" else Path(cfg.resume).parent.parent
        if cfg.resume != "auto" or store.complete():
            notes = check_resume(read_fingerprint(folder), fingerprint, f"{folder} holds checkpoints trained",
                                 f"Rerun without resume= to train from scratch in {cfg.out_dir} (its checkpoints "
                                 "are replaced as new ones are written), or with another out_dir=.")
    if write:
        write_fingerprint(cfg.out_dir, fingerprint)
    return notes


__all__ = ["OPTIMIZER_FILE", "RNG_FILE", "optimizer_chain", "optimizer_file", "save_training_state",
           "check_compatible", "load_training_state", "resume_training", "RESUMABLE_CHANGES", "training_fingerprint",
           "check_training_inputs"]
