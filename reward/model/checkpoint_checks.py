"""Consistency checks of a reward checkpoint's two configs against each other and the backbone class.

``reward.model.editreward.load_checkpoint`` calls them: a key that would be ignored silently (unknown to the
backbone's config class, or a ``tiny:`` size the saved weights do not have) is a DataError naming the file and key.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

from editrl.io import DataError
from reward.model.config import RewardModelConfig, TinyBackboneConfig

# Keys of backbone_config.json that older transformers versions wrote and the current one reads differently.
_LEGACY_CONFIG_KEYS = frozenset({"rope_scaling", "rope_theta", "torch_dtype", "use_cache", "vocab_size"})
# TinyBackboneConfig fields that shape the weights, and where backbone_config.json holds each.
_TINY_ARCH = {
    "hidden_size": ("text_config", "hidden_size"), "num_hidden_layers": ("text_config", "num_hidden_layers"),
    "num_attention_heads": ("text_config", "num_attention_heads"),
    "num_key_value_heads": ("text_config", "num_key_value_heads"),
    "intermediate_size": ("text_config", "intermediate_size"),
    "mrope_section": ("text_config", "rope_parameters", "mrope_section"),
    "max_position_embeddings": ("text_config", "max_position_embeddings"),
    "vision_depth": ("vision_config", "depth"), "vision_hidden_size": ("vision_config", "hidden_size"),
    "vision_num_heads": ("vision_config", "num_heads"), "vision_intermediate_size": ("vision_config", "intermediate_size"),
    "vision_fullatt_block_indexes": ("vision_config", "fullatt_block_indexes"),
    "vision_window_size": ("vision_config", "window_size"), "vision_patch_size": ("vision_config", "patch_size"),
}


def check_config_keys(arch: Path, arch_dict: dict, config: Any) -> None:
    """Keys of ``backbone_config.json`` that the backbone class does not know would be ignored: an error."""
    sections = [("", arch_dict, type(config))]
    for name in ("text_config", "vision_config"):
        sub = getattr(config, name, None)
        if isinstance(arch_dict.get(name), dict) and sub is not None:
            sections.append((name + ".", arch_dict[name], type(sub)))
    for prefix, given, cls in sections:
        known = set(cls().to_dict())
        for key in sorted(set(given) - known - _LEGACY_CONFIG_KEYS):
            close = difflib.get_close_matches(key, sorted(known), n=1)
            raise DataError(arch, f"unknown key {prefix}{key} for {cls.__name__} (it would be ignored)"
                                  + (f"; did you mean {prefix}{close[0]}?" if close else ""), field=prefix + key)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    section = (getattr(text, "rope_parameters", None) or {}).get("mrope_section")
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    if section is not None and 2 * sum(section) != head_dim:
        raise DataError(arch, f"text_config.rope_parameters.mrope_section {list(section)} sums to {sum(section)}, "
                              f"but the rotary split must sum to head_dim / 2 = {head_dim // 2}",
                        field="text_config.rope_parameters.mrope_section")


def ignored_tiny_field(model_cfg: RewardModelConfig) -> tuple[str, str] | None:
    """(field, message) for the first ``tiny.*`` value off its default when the backbone is a folder (where the
    tiny sizes are not read, so a set value would be ignored silently); None when there is none."""
    if model_cfg.backbone == "tiny":
        return None
    tiny, default = dataclasses.asdict(model_cfg.tiny), dataclasses.asdict(TinyBackboneConfig())
    changed = sorted(k for k in tiny if tiny[k] != default[k])
    if not changed:
        return None
    return (f"tiny.{changed[0]}", f"tiny.{changed[0]} = {tiny[changed[0]]!r} is ignored: tiny.* sizes are read only "
                                  f"when backbone is 'tiny' (this one is {model_cfg.backbone!r})")


def check_tiny_section(cfg_path: Path, arch: Path, model_cfg: RewardModelConfig, config: Any) -> None:
    """The ``tiny:`` sizes in ``reward_config.yaml`` must describe the saved backbone (the weights follow
    ``backbone_config.json``, so a differing size would be ignored silently); a non-tiny backbone must leave them
    at their defaults. Init-only keys (seeds, init scales, tokenizer merges) only say how the weights began."""
    tiny = dataclasses.asdict(model_cfg.tiny)
    if model_cfg.backbone != "tiny":
        problem = ignored_tiny_field(model_cfg)
        if problem:
            raise DataError(cfg_path, problem[1], field=problem[0])
        return
    saved = config.to_dict()
    for key, path in _TINY_ARCH.items():
        value: Any = saved
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            continue
        value = list(value) if isinstance(value, (list, tuple)) else value
        if value != tiny[key]:
            raise DataError(cfg_path, f"tiny.{key} = {tiny[key]!r} but {arch.name} has {'.'.join(path)} = {value!r}: "
                                      f"the weights follow {arch.name}, so this value would be ignored",
                            field=f"tiny.{key}")


def drop_unknown_config_keys(config: Any) -> list[str]:
    """Remove attributes a backbone config (and its text / vision sections) holds but its class does not define,
    such as the Qwen2.5-VL-7B config.json's ``vision_token_id``, which transformers ignores, so that the
    backbone_config.json a checkpoint saves passes ``check_config_keys``; returns the removed names."""
    dropped = []
    for prefix, section in (("", config), ("text_config.", getattr(config, "text_config", None)),
                            ("vision_config.", getattr(config, "vision_config", None))):
        if section is None or section is config and prefix:
            continue
        known = set(type(section)().to_dict()) | _LEGACY_CONFIG_KEYS
        for key in sorted(set(section.to_dict()) - known):
            if key in section.__dict__:
                delattr(section, key)
                dropped.append(prefix + key)
    return dropped
