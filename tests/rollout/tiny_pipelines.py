"""Tiny random-weight diffusers editing pipelines, built offline (no hub), for the adapter tests.

Every component is the real library class at a toy size; the tokenizers and the Qwen2.5-VL processor
are assembled from vocabularies written here. ``write_*`` saves the pipeline with
``save_pretrained(safe_serialization=True)`` so the adapters are exercised through their real
``from_pretrained(local_dir)`` path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

# Words the test instructions use; each becomes one token in the tiny T5 / Qwen vocabularies.
WORDS = ("recolour make turn remove add move change the a to of in and red green blue yellow circle square "
         "triangle background left right top bottom object").split()

QWEN_SPECIAL_TOKENS = (
    "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
    "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>",
    "<|video_pad|>",
)


def _byte_alphabet() -> list[str]:
    from tokenizers import pre_tokenizers

    return sorted(pre_tokenizers.ByteLevel.alphabet())


def build_clip_tokenizer() -> Any:
    """A byte-level ``CLIPTokenizer`` (one token per character, no merges) with CLIP's special tokens."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {}
    for suffix in ("", "</w>"):
        for ch in _byte_alphabet():
            vocab[ch + suffix] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def build_t5_tokenizer() -> Any:
    """A Unigram ``T5Tokenizer`` (tokenizers-backed in transformers 5) over ``WORDS`` plus single letters."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -3.0)]
    pieces += [("\u2581" + w, -2.0) for w in WORDS]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def build_tiny_kontext_pipeline(seed: int = 0) -> Any:
    """A ``FluxKontextPipeline`` with ~0.1M-parameter components (VAE scale 2, 4 latent channels)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    clip_tok, t5_tok = build_clip_tokenizer(), build_t5_tokenizer()
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, out_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=[4, 4, 8],
    )
    torch.manual_seed(seed)
    clip = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(clip_tok), hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=77, projection_dim=32, bos_token_id=len(clip_tok) - 2,
        eos_token_id=len(clip_tok) - 1, pad_token_id=len(clip_tok) - 1,
    ))
    torch.manual_seed(seed)
    t5 = T5EncoderModel(T5Config(
        vocab_size=len(t5_tok), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    ))
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
        latent_channels=4, norm_num_groups=4, sample_size=32, use_quant_conv=False, use_post_quant_conv=False,
        shift_factor=0.0609, scaling_factor=1.5035,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    for model in (transformer, clip, t5, vae):
        model.eval()  # as from_pretrained leaves them (T5 has dropout)
    return FluxKontextPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=clip_tok,
                               text_encoder_2=t5, tokenizer_2=t5_tok, transformer=transformer)


def build_qwen_processor(image_area: int = 56 * 56) -> Any:
    """An offline ``Qwen2VLProcessor`` (the class the pipeline declares; it also serves Qwen2.5-VL).

    Byte-level ``Qwen2Tokenizer`` with merges that make each of ``WORDS`` one token, plus Qwen's special tokens.
    """
    from transformers import Qwen2Tokenizer, Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    alphabet = _byte_alphabet()
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    merges: list[tuple[str, str]] = []
    space = "\u0120"  # byte-level encoding of " "
    for word in WORDS:  # left-to-right merges so each " word" becomes one token
        symbol = space
        for ch in word:
            merges.append((symbol, ch))
            symbol = symbol + ch
            vocab.setdefault(symbol, len(vocab))
    merges = list(dict.fromkeys(merges))
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, errors="replace")
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS)})
    image_processor = Qwen2VLImageProcessor(min_pixels=image_area, max_pixels=image_area)
    return Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               video_processor=Qwen2VLVideoProcessor())


def build_tiny_qwen_edit_pipeline(seed: int = 0) -> Any:
    """A ``QwenImageEditPipeline`` with a tiny Qwen2.5-VL text encoder and a tiny Qwen-Image VAE (scale 4)."""
    from diffusers import (AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageEditPipeline,
                           QwenImageTransformer2DModel)
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    processor = build_qwen_processor()
    tok = processor.tokenizer
    ids = {name: tok.convert_tokens_to_ids(t) for name, t in [
        ("image", "<|image_pad|>"), ("video", "<|video_pad|>"), ("vstart", "<|vision_start|>"),
        ("vend", "<|vision_end|>"), ("eos", "<|endoftext|>"), ("im_end", "<|im_end|>")]}
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tok), hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=2, max_position_embeddings=1024,
            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [1, 1, 2]},
            bos_token_id=ids["eos"], eos_token_id=ids["im_end"], pad_token_id=ids["eos"],
        ),
        vision_config=dict(depth=2, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=16,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, fullatt_block_indexes=[1]),
        image_token_id=ids["image"], video_token_id=ids["video"], vision_start_token_id=ids["vstart"],
        vision_end_token_id=ids["vend"],
    )
    torch.manual_seed(seed)
    text_encoder = Qwen2_5_VLForConditionalGeneration(config)
    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4),
    )
    torch.manual_seed(seed)
    z_dim = 4
    vae = AutoencoderKLQwenImage(
        base_dim=z_dim * 2, z_dim=z_dim, dim_mult=[1, 2, 4], num_res_blocks=1, temperal_downsample=[False, True],
        latents_mean=[0.1, -0.2, 0.05, 0.0], latents_std=[1.5, 2.0, 0.8, 1.2],
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9, base_image_seq_len=256,
        max_image_seq_len=8192, shift_terminal=0.02, time_shift_type="exponential",
    )
    for model in (transformer, text_encoder, vae):
        model.eval()
    return QwenImageEditPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tok,
                                 processor=processor, transformer=transformer)


def write_pipeline(pipeline: Any, out_dir: str | Path) -> Path:
    """Save ``pipeline`` as a local checkpoint directory (safetensors) and return its path."""
    out = Path(out_dir)
    pipeline.save_pretrained(str(out), safe_serialization=True)
    return out


def write_tiny_kontext(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny FLUX.1-Kontext checkpoint directory (``model_index.json`` + component folders)."""
    return write_pipeline(build_tiny_kontext_pipeline(seed), out_dir)


def write_tiny_qwen_edit(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny Qwen-Image-Edit checkpoint directory (``model_index.json`` + component folders)."""
    return write_pipeline(build_tiny_qwen_edit_pipeline(seed), out_dir)


def write_tiny_reward(path: Path, seed: int = 0) -> Path:
    """A random reward checkpoint smaller than the shipped tiny one (a fast fixture for loops that need a reward)."""
    from reward.model.config import RewardModelConfig, TinyBackboneConfig
    from reward.model.editreward import build_reward_model, save_checkpoint

    torch.manual_seed(seed)
    cfg = RewardModelConfig(tiny=TinyBackboneConfig(
        hidden_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
        vision_depth=1, vision_hidden_size=32, vision_num_heads=2, vision_intermediate_size=32,
        vision_fullatt_block_indexes=[0], vocab_merges=20))
    return save_checkpoint(*build_reward_model(cfg), cfg, path)
