"""Step1X-Edit weights -> diffusers modules: the DiT as ``FluxTransformer2DModel``, the VAE as ``AutoencoderKL``.

Official DiT keys (``step1x-edit-*.safetensors``) -> diffusers FLUX keys:

- ``img_in`` / ``txt_in`` -> ``x_embedder`` / ``context_embedder``; ``time_in`` / ``vector_in`` (``in_layer``,
  ``out_layer``) -> ``time_text_embed.timestep_embedder`` / ``.text_embedder`` (``linear_1``, ``linear_2``);
- ``double_blocks.N``: ``{img,txt}_mod.lin`` -> ``norm1(_context).linear``; ``img_attn.qkv`` split in three rows
  -> ``attn.to_{q,k,v}`` (``txt_attn.qkv`` -> ``attn.add_{q,k,v}_proj``); QK-norm ``scale`` -> ``attn.norm_{q,k}``
  (``norm_added_{q,k}``); ``proj`` -> ``attn.to_out.0`` / ``attn.to_add_out``; ``mlp.{0,2}`` ->
  ``ff(_context).net.{0.proj,2}``;
- ``single_blocks.N``: ``linear1`` split ``[H, H, H, M]`` -> ``attn.to_{q,k,v}``, ``proj_mlp``; ``linear2`` ->
  ``proj_out``; ``norm.{query,key}_norm.scale`` -> ``attn.norm_{q,k}``; ``modulation.lin`` -> ``norm.linear``;
- ``final_layer.linear`` -> ``proj_out``; ``final_layer.adaLN_modulation.1`` (shift, scale) -> ``norm_out.linear``
  with the halves swapped (diffusers reads scale first).

The diffusers-PR layout (``Step1XEditTransformer2DModel``) already uses the FLUX names except ``time_embed`` /
``vec_embed`` (``in_layer``, ``out_layer``). ``connector.*`` is the same in both and is returned apart. Every key
must be consumed and every FLUX parameter filled (strict); sizes come from the tensor shapes. Version: a
``connector.scale_factor`` tensor means v1.0, its absence v1.1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from editrl.io import DataError
from rollout.step1x.connector import PREFIX as CONNECTOR_PREFIX

VAE_SCALE, VAE_SHIFT = 0.3611, 0.1159  # the FLUX autoencoder's latent scale and shift
RELEASE_AXES = (16, 56, 56)  # RoPE axes of the released model (head dim 128)


def detect_version(keys: Any) -> str:
    """``v1.0`` when the checkpoint stores ``connector.scale_factor``, else ``v1.1``."""
    return "v1.0" if CONNECTOR_PREFIX + "scale_factor" in keys else "v1.1"


def split_connector(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(DiT tensors, connector tensors without the prefix)``."""
    dit = {k: v for k, v in state.items() if not k.startswith(CONNECTOR_PREFIX)}
    conn = {k[len(CONNECTOR_PREFIX):]: v for k, v in state.items() if k.startswith(CONNECTOR_PREFIX)}
    return dit, conn


def _count(keys: Any, pattern: str) -> int:
    n = 0
    while pattern.format(n) in keys:
        n += 1
    return n


def dit_config(flux_shapes: Mapping[str, tuple[int, ...]], axes_dims_rope: tuple[int, ...] | None = None,
               where: Any = "checkpoint") -> dict[str, Any]:
    """``FluxTransformer2DModel`` keyword arguments read from FLUX-named ``flux_shapes`` (key -> shape)."""
    need = ("x_embedder.weight", "context_embedder.weight", "time_text_embed.text_embedder.linear_1.weight",
            "proj_out.weight", "transformer_blocks.0.attn.norm_q.weight", "transformer_blocks.0.ff.net.0.proj.weight")
    for key in need:
        if key not in flux_shapes:
            raise DataError(where, f"not a Step1X-Edit DiT: no tensor maps to {key}")
    hidden, in_channels = flux_shapes["x_embedder.weight"]
    head_dim = flux_shapes["transformer_blocks.0.attn.norm_q.weight"][0]
    mlp = flux_shapes["transformer_blocks.0.ff.net.0.proj.weight"][0]
    if mlp != 4 * hidden:
        raise DataError(where, f"MLP width {mlp} is not 4 x {hidden}: diffusers FLUX blocks have MLP ratio 4")
    if axes_dims_rope is None:
        if head_dim != 128:
            raise DataError(where, f"head dim {head_dim} is not the release's 128: pass axes_dims_rope (the RoPE "
                                   f"axes are not stored in the weights)")
        axes_dims_rope = RELEASE_AXES
    if sum(axes_dims_rope) != head_dim:
        raise DataError(where, f"axes_dims_rope {tuple(axes_dims_rope)} must sum to the head dim {head_dim}")
    return dict(patch_size=1, in_channels=in_channels, out_channels=flux_shapes["proj_out.weight"][0],
                num_layers=_count(flux_shapes, "transformer_blocks.{}.norm1.linear.weight"),
                num_single_layers=_count(flux_shapes, "single_transformer_blocks.{}.norm.linear.weight"),
                attention_head_dim=head_dim, num_attention_heads=hidden // head_dim,
                joint_attention_dim=flux_shapes["context_embedder.weight"][1],
                pooled_projection_dim=flux_shapes["time_text_embed.text_embedder.linear_1.weight"][1],
                guidance_embeds=False, axes_dims_rope=tuple(int(a) for a in axes_dims_rope))


def _params(prefix: str, names: dict[str, str]) -> dict[str, str]:
    return {f"{prefix}{src}.{p}": f"{dst}.{p}" for src, dst in names.items() for p in ("weight", "bias")}


def official_to_flux(state: Mapping[str, torch.Tensor], where: Any = "checkpoint") -> dict[str, torch.Tensor]:
    """Official DiT tensors (no ``connector.*``) -> FLUX state dict; an unconsumed key is a DataError."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in state:
            raise DataError(where, f"official Step1X-Edit key {key} is missing")
        used.add(key)
        return state[key]

    renames = _params("", {"img_in": "x_embedder", "txt_in": "context_embedder", "final_layer.linear": "proj_out",
                           "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
                           "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
                           "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
                           "vector_in.out_layer": "time_text_embed.text_embedder.linear_2"})
    for i in range(_count(state, "double_blocks.{}.img_mod.lin.weight")):
        src, dst = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        renames.update(_params(src, {
            "img_mod.lin": dst + "norm1.linear", "txt_mod.lin": dst + "norm1_context.linear",
            "img_attn.proj": dst + "attn.to_out.0", "txt_attn.proj": dst + "attn.to_add_out",
            "img_mlp.0": dst + "ff.net.0.proj", "img_mlp.2": dst + "ff.net.2",
            "txt_mlp.0": dst + "ff_context.net.0.proj", "txt_mlp.2": dst + "ff_context.net.2"}))
        for stream, (q, k) in (("img", ("norm_q", "norm_k")), ("txt", ("norm_added_q", "norm_added_k"))):
            renames[f"{src}{stream}_attn.norm.query_norm.scale"] = f"{dst}attn.{q}.weight"
            renames[f"{src}{stream}_attn.norm.key_norm.scale"] = f"{dst}attn.{k}.weight"
            targets = ("to_q", "to_k", "to_v") if stream == "img" else ("add_q_proj", "add_k_proj", "add_v_proj")
            for p in ("weight", "bias"):
                for name, part in zip(targets, take(f"{src}{stream}_attn.qkv.{p}").chunk(3, dim=0)):
                    out[f"{dst}attn.{name}.{p}"] = part
    for i in range(_count(state, "single_blocks.{}.linear1.weight")):
        src, dst = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        renames.update(_params(src, {"linear2": dst + "proj_out", "modulation.lin": dst + "norm.linear"}))
        renames[src + "norm.query_norm.scale"] = dst + "attn.norm_q.weight"
        renames[src + "norm.key_norm.scale"] = dst + "attn.norm_k.weight"
        hidden = state[src + "linear2.weight"].shape[0]
        for p in ("weight", "bias"):
            fused = take(f"{src}linear1.{p}")
            sizes = [hidden, hidden, hidden, fused.shape[0] - 3 * hidden]
            for name, part in zip(("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), fused.split(sizes, dim=0)):
                out[f"{dst}{name}.{p}"] = part
    for p in ("weight", "bias"):
        shift, scale = take(f"final_layer.adaLN_modulation.1.{p}").chunk(2, dim=0)
        out[f"norm_out.linear.{p}"] = torch.cat([scale, shift], dim=0)
    for src, dst in renames.items():
        out[dst] = take(src)
    left = sorted(set(state) - used)
    if left:
        raise DataError(where, f"{len(left)} official keys have no diffusers counterpart, e.g. {left[:3]}")
    return out


PR_RENAMES = {"time_embed.in_layer": "time_text_embed.timestep_embedder.linear_1",
              "time_embed.out_layer": "time_text_embed.timestep_embedder.linear_2",
              "vec_embed.in_layer": "time_text_embed.text_embedder.linear_1",
              "vec_embed.out_layer": "time_text_embed.text_embedder.linear_2"}


def pr_to_flux(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Diffusers-PR ``Step1XEditTransformer2DModel`` tensors (no ``connector.*``) -> FLUX state dict."""
    out = {}
    for key, value in state.items():
        stem, _, param = key.rpartition(".")
        out[f"{PR_RENAMES[stem]}.{param}" if stem in PR_RENAMES else key] = value
    return out


def build_flux(flux_state: dict[str, torch.Tensor], dtype: torch.dtype, axes_dims_rope: tuple[int, ...] | None = None,
               where: Any = "checkpoint") -> Any:
    """A ``FluxTransformer2DModel`` sized from ``flux_state``'s shapes, built on the meta device, filled strictly."""
    from diffusers import FluxTransformer2DModel

    config = dit_config({k: tuple(v.shape) for k, v in flux_state.items()}, axes_dims_rope, where)
    with torch.device("meta"):
        model = FluxTransformer2DModel(**config)
    _load_strict(model, flux_state, dtype, where)
    return model


def _load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], dtype: torch.dtype, where: Any) -> None:
    """Fill a meta-device ``model`` with ``state`` cast to ``dtype``; any missing, extra or mis-shaped key is an error."""
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise DataError(where, f"weights do not fit {type(model).__name__}: missing {missing[:3]} "
                               f"({len(missing)}), unexpected {unexpected[:3]} ({len(unexpected)})")
    for key, value in model.state_dict().items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise DataError(where, f"{key}: shape {tuple(state[key].shape)}, expected {tuple(value.shape)}")
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)


def build_connector(conn_state: dict[str, torch.Tensor], heads: int | None, dtype: torch.dtype,
                    where: Any = "checkpoint") -> Any:
    """The ``Step1XConnector`` for ``connector.*`` tensors (prefix stripped), filled strictly."""
    from rollout.step1x.connector import Step1XConnector

    shapes = {CONNECTOR_PREFIX + k: tuple(v.shape) for k, v in conn_state.items()}
    with torch.device("meta"):
        connector = Step1XConnector.from_shapes(shapes, heads, where=str(where))
    _load_strict(connector, conn_state, dtype, where)
    return connector


# ---------------------------------------------------------------------------------------------------------- VAE
def vae_config(shapes: Mapping[str, tuple[int, ...]], where: Any = "vae.safetensors") -> dict[str, Any]:
    """``AutoencoderKL`` keyword arguments for official (FLUX ``ae``) VAE ``shapes``."""
    if "encoder.conv_in.weight" not in shapes:
        raise DataError(where, "not a FLUX autoencoder: encoder.conv_in.weight is missing")
    levels = _count(shapes, "encoder.down.{}.block.0.conv1.weight")
    channels = [shapes[f"encoder.down.{i}.block.0.conv2.weight"][0] for i in range(levels)]
    return dict(in_channels=shapes["encoder.conv_in.weight"][1], out_channels=shapes["decoder.conv_out.weight"][0],
                down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
                block_out_channels=tuple(channels), layers_per_block=_count(shapes, "encoder.down.0.block.{}.conv1.weight"),
                latent_channels=shapes["decoder.conv_in.weight"][1], norm_num_groups=32,
                scaling_factor=VAE_SCALE, shift_factor=VAE_SHIFT, use_quant_conv=False, use_post_quant_conv=False)


def official_vae_to_diffusers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official VAE tensors -> ``AutoencoderKL`` names (attention 1x1 convs become linear weights)."""
    levels = _count(state, "encoder.down.{}.block.0.conv1.weight")
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        side, rest = parts[0], parts[1:]
        if rest[0] in ("down", "up"):
            i = int(rest[1]) if rest[0] == "down" else levels - 1 - int(rest[1])
            block = "down_blocks" if rest[0] == "down" else "up_blocks"
            if rest[2] == "block":
                rest = [block, str(i), "resnets", *rest[3:]]
            else:  # downsample / upsample
                rest = [block, str(i), "downsamplers" if rest[0] == "down" else "upsamplers", "0", *rest[3:]]
        elif rest[0] == "mid":
            if rest[1].startswith("block_"):
                rest = ["mid_block", "resnets", str(int(rest[1][-1]) - 1), *rest[2:]]
            else:
                names = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
                rest = ["mid_block", "attentions", "0", names[rest[2]], *rest[3:]]
                if rest[-1] == "weight" and value.ndim == 4:
                    value = value[:, :, 0, 0]
        elif rest[0] == "norm_out":
            rest = ["conv_norm_out", *rest[1:]]
        rest = ["conv_shortcut" if r == "nin_shortcut" else r for r in rest]
        out[".".join([side, *rest])] = value
    return out


def build_vae(state: Mapping[str, torch.Tensor], dtype: torch.dtype, where: Any = "vae.safetensors") -> Any:
    """A diffusers ``AutoencoderKL`` holding the official FLUX VAE weights (strict)."""
    from diffusers import AutoencoderKL

    shapes = {k: tuple(v.shape) for k, v in state.items()}
    with torch.device("meta"):
        vae = AutoencoderKL(**vae_config(shapes, where))
    _load_strict(vae, official_vae_to_diffusers(state), dtype, where)
    return vae


def read_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a safetensors file, from its header (no tensor is read)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
