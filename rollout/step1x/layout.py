"""Where a Step1X-Edit checkpoint's pieces are: the official release folder or the diffusers-PR folder.

Official (what ``stepfun-ai/Step1X-Edit`` ships; any file names accepted when unambiguous)::

    DIR/step1x-edit-i1258.safetensors          v1.0 DiT + connector (817 tensors, with connector.scale_factor)
     or step1x-edit-v1p1-official.safetensors  v1.1 DiT + connector (816 tensors)
    DIR/vae.safetensors                        the FLUX autoencoder (official key names)
    DIR/Qwen2.5-VL-7B-Instruct/                a transformers Qwen2.5-VL folder (any subfolder whose config.json
                                               says qwen2_5_vl; or qwen_path=...)

Diffusers PR #12249 (``stepfun-ai/Step1X-Edit-v1p1-diffusers``)::

    DIR/model_index.json      "_class_name": "Step1XEditPipeline"
    DIR/transformer/          Step1XEditTransformer2DModel: config.json + diffusion_pytorch_model*.safetensors
    DIR/vae/                  AutoencoderKL (diffusers format)
    DIR/text_encoder/         Qwen2_5_VLForConditionalGeneration
    DIR/processor/            Qwen2_5_VLProcessor (tokenizer + image processor)
    DIR/scheduler/            not read: the schedule is the official time shift

Either layout may hold ``step1x_config.json``: defaults for ``Step1XEditEditor.from_pretrained`` arguments the
weights do not determine (``OPTION_KEYS``, e.g. the RoPE axes of a checkpoint that is not release-sized); explicit
arguments win over it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from editrl.io import DataError

OFFICIAL_DIT_NAMES = ("step1x-edit-v1p1-official.safetensors", "step1x-edit-i1258.safetensors")
PIPELINE_CLASS = "Step1XEditPipeline"
PR_COMPONENTS = ("transformer", "vae", "text_encoder", "processor")
OPTIONS_FILE = "step1x_config.json"
OPTION_KEYS = ("axes_dims_rope", "connector_heads", "encoder_variant", "size_level", "negative_prompt",
               "default_guidance", "cfg_truncate")


@dataclass
class Step1XFiles:
    """The resolved pieces of one checkpoint."""

    layout: str  # "official" or "diffusers"
    dit_files: list[Path]  # safetensors holding the DiT and connector.* (one file, or the PR's shards)
    vae: Path  # official vae.safetensors, or the PR's vae/ folder
    text_encoder: Path
    processor: Path
    transformer_config: dict[str, Any]  # the PR transformer's config.json ({} for the official layout)
    options: dict[str, Any]  # from step1x_config.json ({} when there is none)


def read_options(folder: Path) -> dict[str, Any]:
    """The folder's ``step1x_config.json`` (validated keys), or {}."""
    path = folder / OPTIONS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(path, f"malformed JSON ({err.msg} at line {err.lineno})") from err
    if not isinstance(data, dict):
        raise DataError(path, "expected a JSON object")
    unknown = sorted(set(data) - set(OPTION_KEYS))
    if unknown:
        raise DataError(path, f"unknown key; expected one of {', '.join(OPTION_KEYS)}", field=unknown[0])
    return data


def looks_official(folder: Path) -> bool:
    """A folder with ``vae.safetensors`` and an official Step1X-Edit DiT file name (registry detection)."""
    return (folder / "vae.safetensors").is_file() and any((folder / n).is_file() for n in OFFICIAL_DIT_NAMES)


def _is_qwen_folder(folder: Path) -> bool:
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type") == "qwen2_5_vl"
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def _official_dit(folder: Path, dit_file: str | None) -> Path:
    if dit_file is not None:
        path = Path(dit_file) if Path(dit_file).is_absolute() else folder / dit_file
        if not path.is_file():
            raise DataError(path, "dit_file not found")
        return path
    named = [folder / n for n in OFFICIAL_DIT_NAMES if (folder / n).is_file()]
    others = [p for p in sorted(folder.glob("*.safetensors")) if p.name != "vae.safetensors" and p not in named]
    candidates = named or others
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        raise DataError(folder, f"expected one Step1X-Edit DiT file ({' or '.join(OFFICIAL_DIT_NAMES)}), found "
                                f"{found}: pass dit_file=NAME")
    return candidates[0]


def resolve(path: str | Path, dit_file: str | None = None, qwen_path: str | None = None) -> Step1XFiles:
    """The checkpoint pieces under ``path`` (layouts in the module docstring); DataError naming what is missing."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(folder, "Step1X-Edit checkpoint must be a local folder (hub ids are not fetched here)")
    if (folder / "model_index.json").is_file():
        return _resolve_diffusers(folder, qwen_path)
    vae = folder / "vae.safetensors"
    if not vae.is_file():
        raise DataError(vae, "missing: the official layout needs the FLUX autoencoder next to the DiT file")
    if qwen_path is not None:
        qwen = Path(qwen_path)
    else:
        found = [p for p in sorted(folder.iterdir()) if p.is_dir() and _is_qwen_folder(p)]
        if len(found) != 1:
            raise DataError(folder, f"expected one Qwen2.5-VL subfolder (config.json model_type qwen2_5_vl), found "
                                    f"{len(found)}: pass qwen_path=DIR")
        qwen = found[0]
    if not _is_qwen_folder(qwen):
        raise DataError(qwen / "config.json", "not a Qwen2.5-VL folder", field="model_type")
    return Step1XFiles("official", [_official_dit(folder, dit_file)], vae, qwen, qwen, {}, read_options(folder))


def _resolve_diffusers(folder: Path, qwen_path: str | None) -> Step1XFiles:
    from rollout.pipeline_folders import check_pipeline_folder

    check_pipeline_folder(folder, PIPELINE_CLASS, PR_COMPONENTS)
    tdir = folder / "transformer"
    index = tdir / "diffusion_pytorch_model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError) as err:
            raise DataError(index, f"not a safetensors index ({err})", field="weight_map") from err
        files = [tdir / s for s in shards]
    else:
        files = sorted(tdir.glob("*.safetensors"))
    if not files or not all(f.is_file() for f in files):
        raise DataError(tdir, "no transformer safetensors weights (diffusion_pytorch_model*.safetensors)")
    config_path = tdir / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(config_path, f"unreadable transformer config ({err})") from err
    qwen = Path(qwen_path) if qwen_path is not None else folder / "text_encoder"
    return Step1XFiles("diffusers", files, folder / "vae", qwen, folder / "processor", config, read_options(folder))


def load_tensors(files: list[Path]) -> dict[str, torch.Tensor]:
    """All tensors of the given safetensors files (a key in two files is an error)."""
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for f in files:
        part = load_file(str(f))
        clash = sorted(set(part) & set(state))
        if clash:
            raise DataError(f, f"tensor {clash[0]} also appears in another shard")
        state.update(part)
    return state
