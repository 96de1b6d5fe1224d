# long: the reward model class, how it is built from a config and how its checkpoint folder is saved and loaded
"""EditReward: a VLM backbone whose reward-token hidden state feeds Gaussian heads, one (mu, log_sigma) per dimension.

Heads (paper section 3.2, appendix A.4):
- ``multiple`` (the paper's choice): one MLP per dimension, each emitting (mu_d, log_sigma_d);
- ``shared`` (the ablation): one MLP whose last layer emits (mu_1, log_sigma_1, ..., mu_D, log_sigma_D).
Each MLP is ``Linear(h, width)-ReLU-Dropout-Linear(width, bottleneck)-ReLU-Linear(bottleneck, out)`` in
float32 (official: width 1024, bottleneck 16, dropout 0.05).

``forward`` scores every dimension from ONE backbone pass; ``forward_official_style`` reproduces the
official inference cost (one full pass per dimension) as the benchmark baseline. ``encode_prefix`` +
``forward_with_prefix`` score group candidates against a cached shared prefix.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reward.model.backbone import cache_kwargs
from reward.model.config import RewardModelConfig

WEIGHTS_NAME = "model.safetensors"
BACKBONE_CONFIG_NAME = "backbone_config.json"
REWARD_CONFIG_NAME = "reward_config.yaml"
EXTRA_NAME = "extra.json"


@dataclass
class RewardOutput:
    """Per-edit Gaussian parameters, shape (B, D) each, float32, D in ``RewardModelConfig.dimensions`` order."""

    mu: torch.Tensor
    log_sigma: torch.Tensor


@dataclass
class PrefixState:
    """A batch of encoded group prefixes: their key/value cache and what is needed to place suffixes after them."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (P, kv_heads, Lp, head_dim)
    input_ids: torch.Tensor  # (P, Lp), right-padded
    attention_mask: torch.Tensor  # (P, Lp)
    mm_token_type_ids: torch.Tensor  # (P, Lp)
    image_grids: list[torch.Tensor]  # per prefix: (n_images, 3) grids of its images, in order


def _mlp(hidden: int, width: int, bottleneck: int, out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden, width), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(width, bottleneck), nn.ReLU(), nn.Linear(bottleneck, out))


def _text_hidden_size(config: Any) -> int:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text.hidden_size)


class EditRewardModel(nn.Module):
    """Backbone (a Qwen2.5-VL-architecture base model) + float32 Gaussian heads read at the reward token."""

    def __init__(self, backbone: nn.Module, model_cfg: RewardModelConfig, reward_token_id: int):
        super().__init__()
        self.backbone = backbone
        self.cfg = model_cfg
        self.reward_token_id = int(reward_token_id)
        config = self.core.config
        self.vision_start_token_id = int(config.vision_start_token_id)
        hidden = _text_hidden_size(config)
        d = model_cfg.num_dimensions
        if model_cfg.head == "multiple":
            self.heads = nn.ModuleList(_mlp(hidden, model_cfg.head_width, model_cfg.head_bottleneck, 2,
                                            model_cfg.head_dropout) for _ in range(d))
        else:
            self.heads = nn.ModuleList([_mlp(hidden, model_cfg.head_width, model_cfg.head_bottleneck, 2 * d,
                                             model_cfg.head_dropout)])
        self.heads.float()
        self._pre_norm: torch.Tensor | None = None
        if model_cfg.head_input == "pre_norm":
            self._final_norm().register_forward_pre_hook(self._keep_pre_norm)
        self._apply_training_options()

    # -- set-up --------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, model_cfg: RewardModelConfig, processor_dir: str | Path | None = None) -> "EditRewardModel":
        """A fresh model (see ``build_reward_model``); its processor is attached as ``.processor``."""
        model, _ = build_reward_model(model_cfg, processor_dir)
        return model

    @property
    def core(self) -> nn.Module:
        """The transformers base model (``Qwen2_5_VLModel``): has ``get_rope_index``, ``visual``, ``language_model``."""
        return self.backbone

    def _apply_training_options(self) -> None:
        cfg = self.cfg
        if cfg.lora_r > 0:
            from peft import LoraConfig, inject_adapter_in_model

            lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                              target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)")
            inject_adapter_in_model(lora, self.backbone)
            for name, p in self.backbone.named_parameters():
                p.requires_grad = "lora_" in name
        if cfg.freeze_vision:
            for p in self.core.visual.parameters():
                p.requires_grad = False
        if cfg.gradient_checkpointing:
            if hasattr(self.backbone, "activation_checkpointing_enable"):  # the transformers >= 5.x name
                self.backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                self.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def _final_norm(self) -> nn.Module:
        text = getattr(self.core, "language_model", None)
        norm = getattr(text, "norm", None)
        if norm is None:
            raise ValueError(f"head_input='pre_norm' needs the backbone's final text norm (language_model.norm); "
                             f"{type(self.core).__name__} has none")
        return norm

    def _keep_pre_norm(self, module: nn.Module, args: tuple) -> None:
        self._pre_norm = args[0]

    def _head_states(self, hidden: torch.Tensor) -> torch.Tensor:
        """The per-token states the heads read: ``hidden`` itself, or what entered the final norm (pre_norm)."""
        if self.cfg.head_input == "final":
            return hidden
        pre, self._pre_norm = self._pre_norm, None
        if pre is None or pre.shape[:2] != hidden.shape[:2]:
            raise RuntimeError("head_input='pre_norm': the final norm's input was not captured for this pass")
        return pre

    # -- pieces --------------------------------------------------------------------------------------
    def rope_positions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, mm_token_type_ids: torch.Tensor,
                       image_grid_thw: torch.Tensor | None, video_grid_thw: torch.Tensor | None = None,
                       second_per_grid_ts: torch.Tensor | None = None) -> torch.Tensor:
        """Multimodal RoPE position ids (3, B, L) of right- or left-padded sequences (the library's own rule)."""
        position_ids, _ = self.core.get_rope_index(input_ids, mm_token_type_ids=mm_token_type_ids,
                                                    image_grid_thw=image_grid_thw, video_grid_thw=video_grid_thw,
                                                    second_per_grid_ts=second_per_grid_ts,
                                                    attention_mask=attention_mask)
        return position_ids

    def reward_hidden(self, hidden: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Last hidden state at each row's (last) reward token: (B, H)."""
        is_reward = input_ids == self.reward_token_id
        if not bool(is_reward.any(dim=1).all()):
            missing = (~is_reward.any(dim=1)).nonzero().flatten().tolist()
            raise ValueError(f"rows {missing} hold no reward token (id {self.reward_token_id})")
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        last = torch.where(is_reward, positions, -1).amax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def head_outputs(self, h: torch.Tensor, dims: list[int] | None = None) -> RewardOutput:
        """(mu, log_sigma) for dimensions ``dims`` (default: all) from reward-token states (B, H)."""
        h = h.float()
        d_all = self.cfg.num_dimensions
        dims = list(range(d_all)) if dims is None else dims
        if self.cfg.head == "multiple":
            out = torch.stack([self.heads[d](h) for d in dims], dim=1)  # (B, len(dims), 2)
        else:
            out = self.heads[0](h).view(h.shape[0], d_all, 2)[:, dims]
        return RewardOutput(mu=out[..., 0], log_sigma=out[..., 1])

    def _backbone_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor | None,
                         image_grid_thw: torch.Tensor | None, mm_token_type_ids: torch.Tensor,
                         position_ids: torch.Tensor | None = None, pixel_values_videos: torch.Tensor | None = None,
                         video_grid_thw: torch.Tensor | None = None,
                         second_per_grid_ts: torch.Tensor | None = None) -> torch.Tensor:
        if position_ids is None:
            position_ids = self.rope_positions(input_ids, attention_mask, mm_token_type_ids, image_grid_thw,
                                               video_grid_thw, second_per_grid_ts)
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            pixel_values=pixel_values, image_grid_thw=image_grid_thw,
                            pixel_values_videos=pixel_values_videos, video_grid_thw=video_grid_thw, use_cache=False)
        return out.last_hidden_state

    # -- forward passes ------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor | None = None,
                image_grid_thw: torch.Tensor | None = None, mm_token_type_ids: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, pixel_values_videos: torch.Tensor | None = None,
                video_grid_thw: torch.Tensor | None = None, second_per_grid_ts: torch.Tensor | None = None,
                **unused: Any) -> RewardOutput:
        """Every dimension's (mu, log_sigma), shape (B, D), from one backbone pass over a builder batch; an
        ``OfficialInputBuilder`` batch (input_ids (D, B, L)) runs the official passes (reward/official/inference.py)."""
        if input_ids.ndim == 3:
            from reward.official.inference import official_forward

            return RewardOutput(*official_forward(self, input_ids, attention_mask, pixel_values, image_grid_thw))
        if self.cfg.inference == "official":
            raise ValueError("this reward model runs in official inference mode (inference: official): build its inputs "
                             "with reward.official.inference.input_builder(processor, cfg), or score through "
                             "RewardScorer; model.with_inference('native') gives editrl's one-pass format")
        if mm_token_type_ids is None:
            raise ValueError("mm_token_type_ids missing: build batches with reward.model.inputs.RewardInputBuilder")
        hidden = self._backbone_hidden(input_ids, attention_mask, pixel_values, image_grid_thw, mm_token_type_ids,
                                       position_ids, pixel_values_videos, video_grid_thw, second_per_grid_ts)
        return self.head_outputs(self.reward_hidden(self._head_states(hidden), input_ids))

    def forward_official_style(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                               pixel_values: torch.Tensor | None = None, image_grid_thw: torch.Tensor | None = None,
                               mm_token_type_ids: torch.Tensor | None = None, pixel_values_videos: torch.Tensor | None = None,
                               video_grid_thw: torch.Tensor | None = None,
                               second_per_grid_ts: torch.Tensor | None = None, **unused: Any) -> RewardOutput:
        """Same outputs as ``forward`` at the official inference cost: one full backbone pass per dimension."""
        mus, log_sigmas = [], []
        for d in range(self.cfg.num_dimensions):
            hidden = self._backbone_hidden(input_ids, attention_mask, pixel_values, image_grid_thw, mm_token_type_ids,
                                           None, pixel_values_videos, video_grid_thw, second_per_grid_ts)
            out = self.head_outputs(self.reward_hidden(self._head_states(hidden), input_ids), dims=[d])
            mus.append(out.mu)
            log_sigmas.append(out.log_sigma)
        return RewardOutput(mu=torch.cat(mus, dim=1), log_sigma=torch.cat(log_sigmas, dim=1))

    def with_inference(self, mode: str) -> "EditRewardModel":
        """This model (the same weights, not a copy) reading inputs of inference mode ``mode`` ("native"/"official")."""
        import copy
        import dataclasses

        if mode == self.cfg.inference:
            return self
        view = copy.copy(self)  # shares parameters and submodules; only the config differs
        view.cfg = dataclasses.replace(self.cfg, inference=mode)
        return view

    # -- shared-prefix group scoring -----------------------------------------------------------------
    def _images_per_row(self, input_ids: torch.Tensor) -> list[int]:
        return (input_ids == self.vision_start_token_id).sum(dim=1).tolist()

    def encode_prefix(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, mm_token_type_ids: torch.Tensor,
                      pixel_values: torch.Tensor | None = None, image_grid_thw: torch.Tensor | None = None,
                      **unused: Any) -> PrefixState:
        """Run the backbone over group prefixes (right-padded batch) once and keep their key/value cache."""
        from transformers import DynamicCache

        position_ids = self.rope_positions(input_ids, attention_mask, mm_token_type_ids, image_grid_thw)
        cache = DynamicCache()
        self.backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                      pixel_values=pixel_values, image_grid_thw=image_grid_thw, use_cache=True,
                      **cache_kwargs(self.backbone, cache))
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        counts = self._images_per_row(input_ids)
        grids = list(torch.split(image_grid_thw, counts)) if image_grid_thw is not None else [None] * len(counts)
        return PrefixState(kv=kv, input_ids=input_ids, attention_mask=attention_mask,
                           mm_token_type_ids=mm_token_type_ids, image_grids=grids)

    def forward_with_prefix(self, prefix: PrefixState, rows: torch.Tensor, input_ids: torch.Tensor,
                            attention_mask: torch.Tensor, mm_token_type_ids: torch.Tensor,
                            pixel_values: torch.Tensor | None = None, image_grid_thw: torch.Tensor | None = None,
                            pixel_values_videos: torch.Tensor | None = None, video_grid_thw: torch.Tensor | None = None,
                            second_per_grid_ts: torch.Tensor | None = None, **unused: Any) -> RewardOutput:
        """Score suffixes (edited image or (source, edited) clip + reward token), candidate i after prefix ``rows[i]``.

        Only the suffix tokens and the edited images go through the backbone; positions are those of the
        full sequence (prefix + suffix), computed by the library's ``get_rope_index`` and sliced.
        """
        from transformers import DynamicCache

        rows = rows.to(prefix.input_ids.device)
        full_ids = torch.cat([prefix.input_ids[rows], input_ids], dim=1)
        full_mask = torch.cat([prefix.attention_mask[rows], attention_mask], dim=1)
        full_types = torch.cat([prefix.mm_token_type_ids[rows], mm_token_type_ids], dim=1)
        suffix_counts = self._images_per_row(input_ids)
        suffix_grids = list(torch.split(image_grid_thw, suffix_counts)) if image_grid_thw is not None else []
        grids = []
        for i, r in enumerate(rows.tolist()):
            if prefix.image_grids[r] is not None:
                grids.append(prefix.image_grids[r])
            if suffix_grids:
                grids.append(suffix_grids[i])
        full_grids = torch.cat(grids, dim=0) if grids else None
        # A suffix holds at most one clip per row and the prefix none, so the suffix's video grids are the full ones.
        positions = self.rope_positions(full_ids, full_mask, full_types, full_grids, video_grid_thw,
                                        second_per_grid_ts)[:, :, prefix.input_ids.shape[1]:]
        cache = DynamicCache(ddp_cache_data=[(k[rows], v[rows]) for k, v in prefix.kv])
        out = self.backbone(input_ids=input_ids, attention_mask=full_mask, position_ids=positions,
                            pixel_values=pixel_values, image_grid_thw=image_grid_thw,
                            pixel_values_videos=pixel_values_videos, video_grid_thw=video_grid_thw,
                            use_cache=True, **cache_kwargs(self.backbone, cache))
        return self.head_outputs(self.reward_hidden(self._head_states(out.last_hidden_state), input_ids))


# -- construction ------------------------------------------------------------------------------------
def build_reward_model(model_cfg: RewardModelConfig, processor_dir: str | Path | None = None) -> tuple[EditRewardModel, Any]:
    """A fresh reward model and its processor: tiny from scratch, or a local backbone checkpoint + new heads."""
    from reward.model.backbone import build_tiny_backbone, build_tiny_processor, ensure_reward_token, load_backbone

    if model_cfg.backbone == "tiny":
        processor = build_tiny_processor(processor_dir, model_cfg)
        backbone = build_tiny_backbone(model_cfg, processor)
    else:
        from reward.model.checkpoint_checks import drop_unknown_config_keys, ignored_tiny_field

        problem = ignored_tiny_field(model_cfg)
        if problem:  # refused now, not when the finished checkpoint is loaded
            raise ValueError(f"model.{problem[1]}; drop the model.tiny section")
        backbone, processor = load_backbone(model_cfg.backbone, model_cfg)
        drop_unknown_config_keys(backbone.config)  # so that its saved backbone_config.json loads strictly
    reward_id = ensure_reward_token(processor, model_cfg.reward_token)
    if model_cfg.inference == "official":  # the official model sizes its embeddings to the tokenizer (a shrink)
        backbone.resize_token_embeddings(len(processor.tokenizer))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(model_cfg.tiny.seed + 1)
        model = EditRewardModel(backbone, model_cfg, reward_id)
    model.processor = processor
    return model, processor


# -- checkpoints -------------------------------------------------------------------------------------
def save_checkpoint(model: EditRewardModel, processor: Any, model_cfg: RewardModelConfig, out_dir: str | Path,
                    extra: dict | None = None) -> Path:
    """Write a self-contained reward checkpoint: weights, backbone architecture, processor, model config."""
    from safetensors.torch import save_file

    from editrl.config import save_config

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(str(out))
    (out / BACKBONE_CONFIG_NAME).write_text(model.core.config.to_json_string())
    save_config(model_cfg, out / REWARD_CONFIG_NAME)
    if extra is not None:
        (out / EXTRA_NAME).write_text(json.dumps(extra, indent=2, default=str))
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    tmp = out / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "reward_token_id": str(model.reward_token_id)})
    os.replace(tmp, out / WEIGHTS_NAME)  # weights appear last and atomically: their presence means "complete"
    return out


def load_checkpoint(path: str | Path, device: str | torch.device | None = None,
                    dtype: str | None = None) -> tuple[EditRewardModel, Any, RewardModelConfig]:
    """Load a checkpoint written by ``save_checkpoint`` (eval mode); errors name the missing file or bad tensor."""
    from safetensors import safe_open

    from editrl.config import ConfigError, load_config
    from editrl.io import DataError
    from reward.model.backbone import backbone_from_config, ensure_reward_token, load_processor

    path = Path(path)
    if not path.is_dir():
        raise DataError(path, "reward checkpoint directory not found")
    cfg_path, weights, arch = path / REWARD_CONFIG_NAME, path / WEIGHTS_NAME, path / BACKBONE_CONFIG_NAME
    if not cfg_path.is_file():
        raise DataError(cfg_path, "missing: not a reward checkpoint (no reward_config.yaml)")
    if not weights.is_file():
        raise DataError(weights, "missing: the checkpoint holds no weights")
    if not arch.is_file():
        raise DataError(arch, "missing: the backbone architecture config is needed to rebuild the model")
    try:
        model_cfg = load_config(RewardModelConfig, cfg_path, [f"dtype={dtype}"] if dtype else [])
    except ConfigError as err:
        raise DataError(cfg_path, str(err).removeprefix(f"{cfg_path}: ")) from err
    processor = load_processor(path, model_cfg)
    reward_id = ensure_reward_token(processor, model_cfg.reward_token)
    from accelerate import init_empty_weights

    try:
        arch_dict = json.loads(arch.read_text())
    except ValueError as err:
        raise DataError(arch, f"not valid JSON: {err}") from err
    try:
        with init_empty_weights():  # parameters on "meta" (no random init of billions of weights); buffers real
            backbone = backbone_from_config(arch_dict, model_cfg)
    except Exception as err:  # transformers' strict config validation raises its own error types
        raise DataError(arch, f"cannot build the backbone: {' '.join(str(err).split())}") from err
    from reward.model.checkpoint_checks import check_config_keys, check_tiny_section

    check_config_keys(arch, arch_dict, backbone.config)
    check_tiny_section(cfg_path, arch, model_cfg, backbone.config)
    model = EditRewardModel(backbone, model_cfg, reward_id)
    expected = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(weights), framework="pt") as f:
            for key in f.keys():
                state[key] = f.get_tensor(key)
    except Exception as err:  # safetensors raises its own error types for truncated / foreign files
        raise DataError(weights, f"cannot read safetensors weights: {err}") from err
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise DataError(weights, f"weights do not match the model: missing {missing[:5]}"
                                 f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                                 f"{' ...' if len(unexpected) > 5 else ''}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise DataError(weights, f"tensor {key!r} has shape {tuple(state[key].shape)} in the file but the model "
                                     f"built from {BACKBONE_CONFIG_NAME} and {REWARD_CONFIG_NAME} expects "
                                     f"{tuple(tensor.shape)}", field=key)
        if state[key].is_floating_point():
            bad = int((~torch.isfinite(state[key])).sum())
            if bad:
                raise DataError(weights, f"tensor {key!r} holds {bad:,} non-finite values (NaN or inf) of "
                                         f"{state[key].numel():,}: the weights are damaged", field=key)
        state[key] = state[key].to(tensor.dtype)
    model.load_state_dict(state, strict=True, assign=True)
    model.processor = processor
    if device is not None:
        model.to(device)
    model.eval()
    return model, processor, model_cfg

