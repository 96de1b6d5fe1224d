"""LoRA adapters on editors, and the self-describing adapter checkpoints RL writes (``rl:RUN`` editor specs).

Every RL checkpoint folder (``RUN/checkpoints/step_N``) holds ``lora.safetensors`` and ``adapter.json``: which base
editor it adapts (the editor spec and its load arguments), the LoRA rank, alpha and target modules, the trained
parameter names, and the algorithm that trained it. The ``rl:`` editor spec rebuilds the trained editor from those
two files alone (``rollout.registry``'s ``rl:`` loader), so evaluation, best-of-N, curation and on-policy data can use a trained policy without importing
the training code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from editrl.checkpoint import CheckpointStore, load_tensors, problem
from editrl.io import DataError

ADAPTER_FILE = "adapter.json"
WEIGHTS_FILE = "lora.safetensors"
FORMAT_VERSION = 1


@dataclass
class AdapterManifest:
    """What an adapter checkpoint needs to be loaded without the run's training config."""

    editor: str  # base editor spec (rollout.registry)
    lora_rank: int
    lora_alpha: int
    lora_targets: list[str] | None = None  # None: the editor's default targets
    train_lora_only: bool = True  # False: base parameters were trained too (they are in lora.safetensors)
    load_kwargs: dict[str, Any] = field(default_factory=dict)
    param_names: list[str] = field(default_factory=list)
    algorithm: str = ""  # e.g. "grpo/group_dpo", "dpo/flow_dpo"
    seed: int = 0  # the seed the adapter was initialised with (the same parameter set is rebuilt from it)
    format_version: int = FORMAT_VERSION

    def write(self, folder: Path) -> Path:
        path = Path(folder) / ADAPTER_FILE
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def read(cls, folder: Path) -> "AdapterManifest":
        path = Path(folder) / ADAPTER_FILE
        if not path.is_file():
            raise DataError(path, "missing: not an adapter checkpoint written by `editrl policy grpo|dpo`")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DataError(path, f"malformed JSON ({err.msg} at line {err.lineno})") from err
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise DataError(path, f"unknown keys {unknown}", field=unknown[0])
        for key in ("editor", "lora_rank", "lora_alpha"):
            if key not in data:
                raise DataError(path, "required", field=key)
        if data.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
            raise DataError(path, f"written by a newer editrl (format {data['format_version']})",
                            field="format_version")
        return cls(**data)


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


def attach_adapter(editor: Any, rank: int, alpha: int, targets: list[str] | None = None,
                   train_lora_only: bool = True, seed: int = 0) -> list[tuple[str, torch.nn.Parameter]]:
    """Attach a LoRA adapter initialised from ``seed``; returns ``[(name, trained parameter), ...]``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lora = editor.add_lora(rank=rank, alpha=alpha, **({"target_modules": targets} if targets else {}))
    lora_ids = {id(p) for p in lora}
    named = [(n, p) for n, p in denoiser(editor).named_parameters()
             if p.requires_grad and (id(p) in lora_ids or not train_lora_only)]
    if not named:
        raise RuntimeError("the editor has no trainable parameters after add_lora")
    return named


def load_adapter_weights(folder: Path, named_params: list[tuple[str, torch.nn.Parameter]]) -> None:
    """Copy ``folder/lora.safetensors`` into the trained parameters; names and shapes must match exactly."""
    path = Path(folder) / WEIGHTS_FILE
    weights = load_tensors(path)
    names = [n for n, _ in named_params]
    if sorted(weights) != sorted(names):
        missing, unexpected = sorted(set(names) - set(weights)), sorted(set(weights) - set(names))
        raise DataError(path, f"parameters do not match the editor's adapter (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]}): different editor or LoRA config?")
    with torch.no_grad():
        for n, p in named_params:
            if weights[n].shape != p.shape:
                raise DataError(path, f"{n}: shape {tuple(weights[n].shape)} != {tuple(p.shape)}")
            if not torch.isfinite(weights[n]).all():
                raise DataError(path, f"{n}: non-finite values")
            p.copy_(weights[n].to(p.device, p.dtype))


def adapter_checkpoint(path: str | Path) -> Path:
    """The checkpoint folder ``path`` names: itself, or the newest complete one of a run folder."""
    path = Path(path)
    if (path / ADAPTER_FILE).is_file():
        why = problem(path)
        if why is not None:
            raise DataError(path, f"incomplete checkpoint: {why}")
        return path
    ckpt = CheckpointStore(path).latest()
    if ckpt is None:
        raise DataError(path, "not an RL run (no complete checkpoints/step_* with an adapter.json) nor one of its "
                              "checkpoints")
    return ckpt


__all__ = ["ADAPTER_FILE", "WEIGHTS_FILE", "AdapterManifest", "denoiser", "editor_device", "attach_adapter",
           "load_adapter_weights", "adapter_checkpoint"]
