"""Editor specs -> Editor objects: ``load_editor("flux-kontext:/ckpt")`` and friends.

A spec is one of

- ``editworld-tiny`` (the shipped tiny editor) or a folder holding a tiny editor;
- ``flux-kontext:/path``, ``qwen-image-edit:/path``, ``step1x-edit:/path`` (local diffusers checkpoint folders);
- ``rl:/run`` — the editor an ``editrl policy grpo|dpo`` run trained: the run folder (its newest complete
  checkpoint) or one ``checkpoints/step_N`` folder; the base editor and LoRA adapter are read from the checkpoint's
  ``adapter.json`` (``rollout.adapters``);
- a bare path: the kind is read from the folder's ``model_index.json`` ``_class_name``; an official Step1X-Edit
  release folder (``vae.safetensors`` + ``step1x-edit-*.safetensors``) is ``step1x-edit``; an RL run folder (with
  ``checkpoints/``) or an adapter checkpoint is ``rl``; any other folder is taken to be a tiny editor.

Hub ids are never accepted: every path must be a local folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from editrl.io import DataError
from rollout.pipeline_folders import read_model_index

# diffusers pipeline class name (model_index.json ``_class_name``) -> spec prefix
PIPELINE_KINDS: dict[str, str] = {
    "FluxKontextPipeline": "flux-kontext",
    "QwenImageEditPipeline": "qwen-image-edit",
    "Step1XEditPipeline": "step1x-edit",
}
TINY_NAMES = ("editworld-tiny", "tiny")


def detect_kind(path: str | Path) -> str:
    """The spec prefix for a checkpoint folder: from ``model_index.json``, or ``tiny`` when it has none."""
    folder = Path(path)
    if not folder.exists():
        raise DataError(folder, "editor checkpoint folder not found")
    if not (folder / "model_index.json").is_file():
        from rollout.adapters import ADAPTER_FILE
        from rollout.step1x.layout import looks_official

        if looks_official(folder):
            return "step1x-edit"
        is_run = (folder / "config.yaml").is_file() and (folder / "checkpoints").is_dir()
        return "rl" if is_run or (folder / ADAPTER_FILE).is_file() else "tiny"
    cls = read_model_index(folder)["_class_name"]
    if cls not in PIPELINE_KINDS:
        raise DataError(folder / "model_index.json", f"unsupported editor pipeline {cls!r}; supported: "
                        f"{', '.join(PIPELINE_KINDS)}", field="_class_name")
    return PIPELINE_KINDS[cls]


def _load_tiny(path: str | None, **kw: Any) -> Any:
    """The tiny editworld editor from ``path``, or the shipped weights in ``rollout/weights/editworld-tiny``."""
    from rollout.tiny_editor import TinyEditor

    return TinyEditor.from_pretrained(str(path if path is not None else shipped_tiny_dir()), **kw)


def shipped_tiny_dir() -> Path:
    """Where the shipped tiny editor's weights live."""
    return Path(__file__).resolve().parent / "weights" / "editworld-tiny"


def _load_flux_kontext(path: str, **kw: Any) -> Any:
    from rollout.flux_kontext import FluxKontextEditor

    return FluxKontextEditor.from_pretrained(path, **kw)


def _load_qwen_image_edit(path: str, **kw: Any) -> Any:
    from rollout.qwen_image_edit import QwenImageEditEditor

    return QwenImageEditEditor.from_pretrained(path, **kw)


def _load_step1x_edit(path: str, **kw: Any) -> Any:
    from rollout.step1x_edit import Step1XEditEditor

    return Step1XEditEditor.from_pretrained(path, **kw)


def _load_rl_run(path: str, **load_kwargs: Any) -> Any:
    """The editor an RL run trained (base editor + its adapter), for sampling and evaluation (eval mode, frozen).

    ``path``: a run folder (its newest complete checkpoint) or one checkpoint folder; ``load_kwargs`` override the
    recorded ``load_kwargs`` of the base editor (e.g. ``device``)."""
    from rollout.adapters import AdapterManifest, adapter_checkpoint, attach_adapter, denoiser, load_adapter_weights

    ckpt = adapter_checkpoint(path)
    manifest = AdapterManifest.read(ckpt)
    editor = load_editor(manifest.editor, **{**manifest.load_kwargs, **load_kwargs})
    named = attach_adapter(editor, manifest.lora_rank, manifest.lora_alpha, manifest.lora_targets,
                           manifest.train_lora_only, manifest.seed)
    load_adapter_weights(ckpt, named)
    for _, p in named:
        p.requires_grad_(False)
    denoiser(editor).eval()
    return editor


LOADERS: dict[str, Callable[..., Any]] = {
    "flux-kontext": _load_flux_kontext,
    "qwen-image-edit": _load_qwen_image_edit,
    "step1x-edit": _load_step1x_edit,
    "rl": _load_rl_run,
}


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split an editor spec into ``(kind, path)``; ``kind`` is ``tiny`` or a key of ``LOADERS``."""
    spec = spec.strip()
    if spec in TINY_NAMES:
        return "tiny", None
    for kind in (*LOADERS, "tiny", "editworld-tiny"):
        if spec.startswith(kind + ":"):
            path = spec[len(kind) + 1:]
            if not path:
                raise ValueError(f"editor spec {spec!r} names no checkpoint folder after '{kind}:'")
            return ("tiny" if kind == "editworld-tiny" else kind), path
    return detect_kind(spec), spec


def load_editor(spec: str, **kw: Any) -> Any:
    """An ``Editor`` for ``spec`` (see the module docstring); ``kw`` go to the adapter's ``from_pretrained``
    (e.g. ``dtype``, ``device``)."""
    kind, path = parse_spec(spec)
    if kind == "tiny":
        return _load_tiny(path, **kw)
    return LOADERS[kind](path, **kw)
