"""The reward model's VLM backbone and processor: a tiny Qwen2.5-VL built offline, or a local checkpoint.

The tiny processor is transformers' own ``Qwen2_5_VLProcessor`` assembled from parts created here
without the hub: a byte-level BPE ``Qwen2Tokenizer`` (256 byte tokens plus merges learned from the
editworld instruction vocabulary, Qwen's special tokens and the reward token), a ``Qwen2VLImageProcessor``
and a ``Qwen2VLVideoProcessor``. Real checkpoints bring their own processor; we only add the reward token.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from reward.model.config import RewardModelConfig, TinyBackboneConfig

QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

SUPPORTED_MODEL_TYPES = ("qwen2_5_vl", "qwen2_vl", "qwen3_vl")

# Words of the editworld instruction grammar and of the prompts; the tiny tokenizer's merges are learned
# from them so that an instruction is a handful of tokens rather than one token per byte.
_COLOURS = "red green blue yellow orange purple cyan magenta white black gray grey pink brown teal navy".split()
_SHAPES = "circle square triangle star rectangle ellipse diamond hexagon cross ring disk box shape object".split()
_VERBS = "recolour recolor colour color change make turn paint remove delete erase add put place insert draw move shift".split()
_PLACES = "left right top bottom center centre middle up down upper lower corner side edge".split()
_WORDS = ("the a an to of in at on into from with and by it its background scene image picture edit edited "
          "source instruction rate score quality visual following small large big tiny new other please "
          "pixels slightly towards toward").split()


def _tokenizer_corpus() -> list[str]:
    """Sentences that cover the editworld grammar and the prompt templates (for learning BPE merges)."""
    from reward.model.inputs import PROMPTS

    lines: list[str] = []
    for colour in _COLOURS:
        for shape in _SHAPES:
            lines += [f"recolour the {shape} to {colour}", f"make the {colour} {shape} {colour}",
                      f"remove the {colour} {shape}", f"add a {colour} {shape}",
                      f"change the background to {colour}"]
        for place in _PLACES:
            lines.append(f"move the {colour} object to the {place}")
    lines += [" ".join(_COLOURS + _SHAPES + _VERBS + _PLACES + _WORDS)] * 4
    for prompt in PROMPTS.values():
        lines += [prompt.prefix.format(instruction=""), prompt.suffix] * 4
    return lines


def _learn_byte_level_bpe(num_merges: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level BPE vocabulary (256 byte symbols + merges) learned from the editworld corpus."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_tokenizer_corpus(), vocab_size=256 + num_merges, min_frequency=2, show_progress=False,
                            special_tokens=[])
    model = json.loads(bpe._tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return dict(model["vocab"]), merges


def build_tiny_processor(out_dir: str | Path | None = None, cfg: RewardModelConfig | None = None) -> Any:
    """The tiny backbone's ``Qwen2_5_VLProcessor``, built offline; saved to ``out_dir`` when given.

    If ``out_dir`` already holds a saved processor it is loaded instead, so a run reuses its tokenizer.
    """
    from transformers import Qwen2_5_VLProcessor, Qwen2Tokenizer, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    cfg = cfg or RewardModelConfig()
    if out_dir is not None and (Path(out_dir) / "vocab.json").is_file():
        return load_processor(out_dir, cfg)
    vocab, merges = _learn_byte_level_bpe(cfg.tiny.vocab_merges)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, errors="replace")
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS[1:]) + [cfg.reward_token]})
    tokenizer.padding_side = "right"
    area = cfg.pixel_area
    image_processor = Qwen2VLImageProcessor(min_pixels=area, max_pixels=area, patch_size=cfg.tiny.vision_patch_size)
    video_processor = Qwen2VLVideoProcessor(patch_size=cfg.tiny.vision_patch_size, min_pixels=area, max_pixels=area)
    processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                    video_processor=video_processor)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        processor.save_pretrained(str(out_dir))
    return processor


def load_processor(path: str | Path, cfg: RewardModelConfig) -> Any:
    """A saved processor (tiny or real) with the reward token present."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(path), local_files_only=True)
    ensure_reward_token(processor, cfg.reward_token)
    return processor


def ensure_reward_token(processor: Any, reward_token: str) -> int:
    """Add the reward token to the processor's tokenizer if it lacks it; returns its id."""
    tokenizer = processor.tokenizer
    if reward_token not in tokenizer.get_vocab():
        tokenizer.add_tokens([reward_token], special_tokens=True)
    tokenizer.padding_side = "right"
    return tokenizer.convert_tokens_to_ids(reward_token)


def tiny_backbone_config(cfg: RewardModelConfig, processor: Any) -> Any:
    """The ``Qwen2_5_VLConfig`` of the tiny backbone, wired to the processor's special-token ids."""
    from transformers import Qwen2_5_VLConfig

    t: TinyBackboneConfig = cfg.tiny
    head_dim = t.hidden_size // t.num_attention_heads
    if sum(t.mrope_section) * 2 != head_dim:
        raise ValueError(f"tiny.mrope_section {t.mrope_section} must sum to head_dim/2 = {head_dim // 2}")
    tok = processor.tokenizer
    ids = {name: tok.convert_tokens_to_ids(token) for name, token in
           [("image", "<|image_pad|>"), ("video", "<|video_pad|>"), ("vstart", "<|vision_start|>"),
            ("vend", "<|vision_end|>"), ("eos", "<|endoftext|>"), ("im_end", "<|im_end|>")]}
    text_config = dict(
        vocab_size=len(tok), hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_hidden_layers, num_attention_heads=t.num_attention_heads,
        num_key_value_heads=t.num_key_value_heads, max_position_embeddings=t.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": list(t.mrope_section)},
        bos_token_id=ids["eos"], eos_token_id=ids["im_end"], pad_token_id=ids["eos"], use_cache=True,
    )
    vision_config = dict(
        depth=t.vision_depth, hidden_size=t.vision_hidden_size, num_heads=t.vision_num_heads,
        intermediate_size=t.vision_intermediate_size, out_hidden_size=t.hidden_size, patch_size=t.vision_patch_size,
        spatial_merge_size=2, temporal_patch_size=2, window_size=t.vision_window_size,
        fullatt_block_indexes=list(t.vision_fullatt_block_indexes),
    )
    return Qwen2_5_VLConfig(text_config=text_config, vision_config=vision_config,
                            image_token_id=ids["image"], video_token_id=ids["video"],
                            vision_start_token_id=ids["vstart"], vision_end_token_id=ids["vend"])


def build_tiny_backbone(cfg: RewardModelConfig, processor: Any) -> Any:
    """A randomly initialised tiny ``Qwen2_5_VLModel`` (the base model: no LM head) for ``processor``."""
    from transformers import Qwen2_5_VLModel

    return build_tiny(Qwen2_5_VLModel, cfg, processor)


def build_tiny(model_class: Any, cfg: RewardModelConfig, processor: Any) -> Any:
    """A randomly initialised tiny Qwen2.5-VL of ``model_class`` (``Qwen2_5_VLModel`` for a reward backbone,
    ``Qwen2_5_VLForConditionalGeneration`` for language-model pretraining), seeded by ``cfg.tiny.seed``."""
    import torch

    config = tiny_backbone_config(cfg, processor)
    config._attn_implementation = cfg.attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.tiny.seed)
        model = model_class(config)
        _fan_in_init(model, cfg.tiny.embed_init_std)
        if cfg.tiny.clip_difference_init:
            visual = model.visual if hasattr(model, "visual") else model.model.visual
            _clip_difference_init(visual.patch_embed.proj.weight)
    return model.to(dtype=torch_dtype(cfg.dtype))


def _fan_in_init(model: Any, embed_std: float) -> None:
    """Re-initialise linear layers with std 1/sqrt(fan_in) and token embeddings with std ``embed_std``.

    The configs' ``initializer_range`` (0.02) suits 3,584-wide pretrained models; in a 64-wide vision tower
    trained from scratch it shrinks the image signal at every layer, so the reward token barely sees the
    edited image and a 32-pair batch cannot even be memorised (measured: loss stuck near log 2 after 60
    AdamW steps, against 0.002 with this init).
    """
    import math

    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            torch.nn.init.normal_(module.weight, 0.0, embed_std)
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, 0.0, 1.0 / math.sqrt(module.in_features))
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)


def _clip_difference_init(weight: Any) -> None:
    """Patch-embedding weight (out, C, T=2, P, P): fan-in init, then the first half of the output channels become
    frame differences (frame 1 = -frame 0), so they respond to what changed between the two frames of a clip."""
    import math

    import torch

    with torch.no_grad():
        fan_in = weight[0].numel()
        weight.normal_(0.0, 1.0 / math.sqrt(fan_in))
        half = weight.shape[0] // 2
        weight[:half, :, 0] = -weight[:half, :, 1]


def backbone_from_config(config_dict: dict, cfg: RewardModelConfig) -> Any:
    """An (untrained) base VLM with the architecture of a saved backbone ``config.json`` dict."""
    from transformers import AutoConfig, AutoModel

    model_type = config_dict.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"backbone model_type {model_type!r} is not one of {SUPPORTED_MODEL_TYPES}")
    config = AutoConfig.for_model(**config_dict)
    config._attn_implementation = cfg.attn_implementation
    return AutoModel.from_config(config, dtype=torch_dtype(cfg.dtype))


def load_backbone(path: str | Path, cfg: RewardModelConfig) -> tuple[Any, Any]:
    """Load a real local VLM checkpoint (base model + processor) and make room for the reward token.

    ``path`` must be a local directory (never a hub id). The LM head of a ``...ForConditionalGeneration``
    checkpoint is dropped: the reward heads read hidden states.
    """
    from transformers import AutoConfig, AutoModel

    from editrl.io import DataError

    path = Path(path)
    if not path.is_dir():
        raise DataError(path, "backbone must be a local checkpoint directory (hub ids are not fetched)")
    if not (path / "config.json").is_file():
        raise DataError(path, "no config.json: not a transformers checkpoint directory")
    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise DataError(path / "config.json", f"model_type {config.model_type!r} is not one of {SUPPORTED_MODEL_TYPES}",
                        field="model_type")
    processor = load_processor(path, cfg)
    model = AutoModel.from_pretrained(str(path), config=config, dtype=torch_dtype(cfg.dtype), use_safetensors=True,
                                      local_files_only=True, attn_implementation=cfg.attn_implementation)
    if len(processor.tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(processor.tokenizer))
    return model, processor


def torch_dtype(name: str) -> Any:
    """torch dtype from its config name ("float32", "bfloat16", "float16")."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def cache_kwargs(module: Any, cache: Any) -> dict[str, Any]:
    """``{name: cache}`` for calling a transformers model with a key/value cache, under the name its ``forward``
    takes: ``cache`` since transformers 5.2x (where ``past_key_values`` is deprecated and warns on every call),
    ``past_key_values`` before; ``{}`` when ``cache`` is None."""
    return {} if cache is None else {_cache_arg(type(module)): cache}


@functools.lru_cache(maxsize=None)
def _cache_arg(cls: type) -> str:
    import inspect

    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"
