"""Tiny Step1X-Edit checkpoints for the tests, written from tests/data/step1x (see its README).

``write_official(root, version)``: the official folder layout (v1.1 is the v1.0 file without
``connector.scale_factor``, which is how the golden v1.1 file was made); ``write_diffusers_pr(root)``: the same v1.1
weights in the diffusers-PR layout. Both carry a ``step1x_config.json`` with the tiny RoPE axes and refiner heads,
which the weights do not determine.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[1] / "data" / "step1x"
TINY_OPTIONS = {"axes_dims_rope": [8, 12, 12], "connector_heads": 2}
DIT_NAMES = {"v1.0": "step1x-edit-i1258.safetensors", "v1.1": "step1x-edit-v1p1-official.safetensors"}


def golden() -> dict[str, torch.Tensor]:
    """The golden tensors, keyed ``<golden file>/<tensor>`` (tests/data/step1x/README.md)."""
    from safetensors.torch import load_file

    return load_file(str(DATA / "golden.safetensors"))


def prompts() -> dict:
    return json.loads((DATA / "prompts.json").read_text())


def write_qwen(folder: Path) -> Path:
    """The tiny Qwen2.5-VL folder (weights un-gzipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in (DATA / "qwen_tiny").iterdir():
        if f.name.endswith(".gz"):
            with gzip.open(f, "rb") as src, open(folder / f.name[:-3], "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            shutil.copy(f, folder / f.name)
    return folder


def official_state(version: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state = load_file(str(DATA / DIT_NAMES["v1.0"]))
    if version == "v1.1":
        del state["connector.scale_factor"]
    return state


def write_official(root: Path, version: str, qwen: Path | None = None, options: dict | None = None) -> Path:
    """An official-layout folder: the DiT file, vae.safetensors, a Qwen2.5-VL subfolder (a link to ``qwen``)."""
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    save_file(official_state(version), str(root / DIT_NAMES[version]))
    shutil.copy(DATA / "vae.safetensors", root / "vae.safetensors")
    target = root / "Qwen2.5-VL-7B-Instruct"
    if qwen is None:
        write_qwen(target)
    else:
        target.symlink_to(qwen.resolve(), target_is_directory=True)
    (root / "step1x_config.json").write_text(json.dumps({**TINY_OPTIONS, **(options or {})}))
    return root


def write_diffusers_pr(root: Path, qwen: Path) -> Path:
    """The v1.1 weights in the diffusers-PR layout (Step1XEditTransformer2DModel keys, diffusers VAE)."""
    from safetensors.torch import load_file, save_file

    from rollout.step1x import convert

    inverse = {v: k for k, v in convert.PR_RENAMES.items()}
    dit, conn = convert.split_connector(official_state("v1.1"))
    pr = {}
    for key, value in convert.official_to_flux(dit).items():
        stem, _, param = key.rpartition(".")
        pr[f"{inverse[stem]}.{param}" if stem in inverse else key] = value.contiguous()
    pr.update({"connector." + k: v for k, v in conn.items()})
    (root / "transformer").mkdir(parents=True)
    save_file(pr, str(root / "transformer" / "diffusion_pytorch_model.safetensors"))
    config = {"_class_name": "Step1XEditTransformer2DModel", "in_channels": 64, "num_layers": 1,
              "num_single_layers": 1, "attention_head_dim": 32, "num_attention_heads": 2, "joint_attention_dim": 48,
              "axes_dims_rope": TINY_OPTIONS["axes_dims_rope"], "connector_heads_num": TINY_OPTIONS["connector_heads"]}
    (root / "transformer" / "config.json").write_text(json.dumps(config))
    convert.build_vae(load_file(str(DATA / "vae.safetensors")), torch.float32).save_pretrained(str(root / "vae"))
    for name in ("text_encoder", "processor"):
        (root / name).symlink_to(qwen.resolve(), target_is_directory=True)
    (root / "scheduler").mkdir()
    (root / "model_index.json").write_text(json.dumps({"_class_name": "Step1XEditPipeline"}))
    return root
