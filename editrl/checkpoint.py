"""One checkpoint store for every trainer (reward model, SFT, online RL): atomic, self-checking, resumable.

A run folder holds ``checkpoints/step_XXXXXX/`` folders. Each is written into ``checkpoints/.staging_step_XXXXXX``
(every process may write its own files there), then rank 0 writes ``state.json`` — the trainer state plus the
size of every file in the folder — and renames the folder into place. A checkpoint is *complete* when its
``state.json`` parses and every file it lists has the listed size; ``latest()`` returns the newest complete one
and warns, naming it, about any newer folder that is torn or partial. ``load_latest()`` also falls back when the
newest complete checkpoint fails to load (a weights file that is corrupt but of the right size).

Tensors are stored as safetensors only; optimiser state goes through ``optimizer_tensors`` /
``optimizer_from_tensors`` (tensors in safetensors, scalars and param groups in JSON) and RNG state through
``rng_state`` / ``restore_rng``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch

from editrl.io import DataError

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"
_PREFIX = "step_"
_STAGING = ".staging_"

T = TypeVar("T")


def step_name(step: int) -> str:
    """The folder name of the checkpoint taken after ``step`` optimiser steps."""
    return f"{_PREFIX}{step:06d}"


def _step_of(path: Path) -> int:
    try:
        return int(path.name[len(_PREFIX):])
    except ValueError:
        return -1


class CheckpointStore:
    """The ``checkpoints/`` folder of one run: write atomically, find the newest complete, keep the last N."""

    def __init__(self, run_dir: str | Path, keep: int = 2) -> None:
        self.root = Path(run_dir) / CHECKPOINT_DIR
        self.keep = keep

    # ---- writing -------------------------------------------------------------------------------------
    def staging(self, step: int, *, clear: bool = True) -> Path:
        """The folder to write checkpoint ``step`` into before ``commit``; ``clear`` (rank 0) empties a stale one."""
        tmp = self.root / f"{_STAGING}{step_name(step)}"
        if clear and tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp

    def commit(self, step: int, state: dict[str, Any]) -> Path:
        """Seal the staged folder: write ``state.json`` (with the file manifest) last, rename it into place, prune."""
        tmp = self.root / f"{_STAGING}{step_name(step)}"
        if not tmp.is_dir():
            raise DataError(tmp, "no staged checkpoint to commit (call staging() first)")
        files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
        payload = {**state, "step": step, "files": files}
        (tmp / STATE_FILE).write_text(json.dumps(payload, indent=1, default=_jsonable))
        final = self.root / step_name(step)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        self.prune()
        return final

    def save(self, step: int, state: dict[str, Any], tensors: dict[str, dict[str, torch.Tensor]] | None = None,
             write: Callable[[Path], None] | None = None) -> Path:
        """Single-process save: ``tensors`` maps file name -> tensors (safetensors); ``write(folder)`` adds files."""
        tmp = self.staging(step)
        for name, group in (tensors or {}).items():
            save_tensors(group, tmp / name)
        if write is not None:
            write(tmp)
        return self.commit(step, state)

    def prune(self) -> None:
        """Delete all but the newest ``keep`` complete checkpoints (``keep <= 0`` keeps all) and stale staging."""
        if self.keep > 0:
            for old in self.complete()[:-self.keep]:
                shutil.rmtree(old, ignore_errors=True)

    # ---- reading -------------------------------------------------------------------------------------
    def folders(self) -> list[Path]:
        """Every ``step_*`` folder, oldest first, complete or not."""
        if not self.root.is_dir():
            return []
        return sorted((p for p in self.root.glob(f"{_PREFIX}*") if p.is_dir() and _step_of(p) >= 0), key=_step_of)

    def complete(self) -> list[Path]:
        """The complete checkpoints, oldest first."""
        return [p for p in self.folders() if problem(p) is None]

    def latest(self) -> Path | None:
        """The newest complete checkpoint; warns about each newer torn one it skips."""
        for path in reversed(self.folders()):
            why = problem(path)
            if why is None:
                return path
            warnings.warn(f"skipping checkpoint {path}: {why}", stacklevel=2)
        return None

    def load_latest(self, load: Callable[[Path], T]) -> tuple[Path, T] | None:
        """``load(path)`` on the newest complete checkpoint that loads, falling back (with a warning) past failures."""
        for path in reversed(self.folders()):
            why = problem(path)
            if why is not None:
                warnings.warn(f"skipping checkpoint {path}: {why}", stacklevel=2)
                continue
            try:
                return path, load(path)
            except (DataError, OSError, RuntimeError, KeyError, ValueError) as err:
                warnings.warn(f"checkpoint {path} does not load ({err}); falling back to the previous one",
                              stacklevel=2)
        return None


def problem(path: Path) -> str | None:
    """Why ``path`` is not a complete checkpoint, or None when it is."""
    state_path = path / STATE_FILE
    if not state_path.is_file():
        return f"{STATE_FILE} missing (written partly)"
    try:
        files = json.loads(state_path.read_text()).get("files", {})
    except (json.JSONDecodeError, OSError, AttributeError) as err:
        return f"{STATE_FILE} unreadable ({err})"
    for name, size in files.items():
        f = path / name
        if not f.is_file():
            return f"{name} missing"
        if f.stat().st_size != size:
            return f"{name} has {f.stat().st_size} bytes, {size} were written (truncated?)"
    return None


def read_state(path: str | Path) -> dict[str, Any]:
    """The trainer state a checkpoint recorded (``state.json``), with its file manifest."""
    path = Path(path)
    why = problem(path)
    if why is not None:
        raise DataError(path, f"not a complete checkpoint: {why}")
    return json.loads((path / STATE_FILE).read_text())


# ---- tensors -------------------------------------------------------------------------------------------
def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Write tensors (detached, on CPU, contiguous) to a safetensors file."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a missing or corrupt file is a DataError naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise DataError(path, "missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise DataError(path, f"cannot read safetensors ({err})") from err


def optimizer_tensors(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A torch optimiser state dict -> (tensors for safetensors, JSON metadata); keys ``state.<param>.<name>``."""
    tensors, scalars = {}, {}
    for pid, pstate in state_dict["state"].items():
        for name, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of ``optimizer_tensors``: a state dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for key, value in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


# ---- RNG -----------------------------------------------------------------------------------------------
def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's torch (CPU and CUDA), Python and NumPy RNG states: (tensors, JSON)."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    ns = np.random.get_state()
    return tensors, {"python": _nested_list(random.getstate()), "numpy": [ns[0], ns[1].tolist(), *ns[2:]]}


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("torch_cuda_"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    random.setstate(_nested_tuple(meta["python"]))
    ns = meta["numpy"]
    np.random.set_state((ns[0], np.asarray(ns[1], dtype=np.uint32), *ns[2:]))


def _nested_list(s: Any) -> Any:
    return [_nested_list(x) for x in s] if isinstance(s, (tuple, list)) else s


def _nested_tuple(s: Any) -> Any:
    return tuple(_nested_tuple(x) for x in s) if isinstance(s, list) else s


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return None  # e.g. a scheduler's lambdas: they live in code, not in state


__all__ = ["CHECKPOINT_DIR", "STATE_FILE", "CheckpointStore", "step_name", "problem", "read_state", "save_tensors",
           "load_tensors", "optimizer_tensors", "optimizer_from_tensors", "rng_state", "restore_rng"]
