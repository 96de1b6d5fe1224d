"""The EditReward model: tiny backbone built offline, processor, heads, one-pass scoring, gradients, checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from editrl.io import DataError
from reward.model.backbone import build_tiny_processor
from reward.model.config import RewardModelConfig
from reward.model.inputs import InputError, RewardInputBuilder
from reward.model.editreward import EditRewardModel, build_reward_model, load_checkpoint, save_checkpoint

INSTRUCTIONS = ["recolour the red circle to blue", "remove the green square", "move the yellow star to the left"]


def _image(w: int, h: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = RewardModelConfig()
    model, processor = build_reward_model(cfg)
    return model.eval(), processor, cfg


@pytest.fixture(scope="module")
def batch(tiny):
    _, processor, cfg = tiny
    builder = RewardInputBuilder(processor, cfg)
    sources = [_image(32, 32, 1), _image(64, 32, 2), _image(40, 56, 3)]
    editeds = [_image(32, 32, 4), _image(32, 48, 5), _image(56, 56, 6)]
    return builder(sources, INSTRUCTIONS, editeds), (sources, editeds)


def test_tiny_processor_is_built_offline_and_round_trips(tmp_path, tiny):
    _, processor, cfg = tiny
    tok = processor.tokenizer
    for text in INSTRUCTIONS:
        ids = tok(text)["input_ids"]
        assert tok.decode(ids) == text
        assert len(ids) < len(text.encode())  # learned merges, not one token per byte
    for special in ["<|im_start|>", "<|vision_start|>", "<|image_pad|>", "<|video_pad|>", cfg.reward_token]:
        ids = tok(special, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tok.convert_ids_to_tokens(ids[0]) == special
    build_tiny_processor(tmp_path, cfg)  # writes the processor
    reloaded = build_tiny_processor(tmp_path, cfg)  # loads it back
    assert type(reloaded).__name__ == "Qwen2_5_VLProcessor"
    text = "Rate the edit. " + INSTRUCTIONS[0] + cfg.reward_token
    assert reloaded.tokenizer(text)["input_ids"] == tok(text)["input_ids"]


def test_builder_places_edited_image_after_shared_prefix(tiny):
    _, processor, cfg = tiny
    builder = RewardInputBuilder(processor, cfg)
    src, ed = _image(32, 32, 1), _image(48, 32, 2)
    full = builder([src], [INSTRUCTIONS[0]], [ed])
    prefix, suffix = builder.prefixes([src], [INSTRUCTIONS[0]]), builder.suffixes([ed])
    assert full["input_ids"][0].tolist() == prefix["input_ids"][0].tolist() + suffix["input_ids"][0].tolist()
    assert torch.equal(full["pixel_values"], torch.cat([prefix["pixel_values"], suffix["pixel_values"]]))
    assert suffix["input_ids"][0, -1].item() == builder.reward_token_id
    # images are resized to about the configured area, aspect kept: 48x32 -> 84x56 (grid 6x4 of 14px patches)
    assert suffix["image_grid_thw"][0].tolist() == [1, 4, 6]
    with pytest.raises(InputError, match="empty"):
        builder([src], ["   "], [ed])
    with pytest.raises(InputError, match="special token"):
        builder([src], ["add <|image_pad|>"], [ed])


def test_pair_clip_puts_source_and_edited_into_one_video_token_per_location():
    cfg = RewardModelConfig(edited_input="pair_clip", pixel_area=1024)
    cfg.tiny.vision_patch_size = 4
    model, processor = build_reward_model(cfg)
    builder = RewardInputBuilder(processor, cfg)
    src, ed = _image(32, 32, 1), _image(32, 32, 2)
    full = builder([src, src], INSTRUCTIONS[:2], [ed, src])
    prefix, suffix = builder.prefixes([src], INSTRUCTIONS[:1]), builder.suffixes([ed], [src])
    assert full["input_ids"][0].tolist() == prefix["input_ids"][0].tolist() + suffix["input_ids"][0].tolist()
    assert suffix["video_grid_thw"][0].tolist() == [1, 8, 8] and "pixel_values" not in suffix
    frames = full["pixel_values_videos"].view(2, 64, 3, 2, 4, 4)  # (edit, patch, channel, frame, y, x)
    assert (frames[0, :, :, 0] - frames[0, :, :, 1]).abs().mean() > 0.1  # source and edited frames differ
    assert torch.equal(frames[1, :, :, 0], frames[1, :, :, 1])  # a no-op clip holds the same frame twice
    with pytest.raises(ValueError, match="source"):
        builder.suffixes([ed])
    with torch.no_grad():
        out = model.eval()(**full)
    assert out.mu.shape == (2, 2) and (out.mu[0] - out.mu[1]).abs().max() > 1e-4


def test_forward_gives_both_dimensions_from_one_pass(tiny, batch):
    model, _, cfg = tiny
    inputs, _ = batch
    calls = []
    hook = model.backbone.register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            out = model(**inputs)
            assert len(calls) == 1
            official = model.forward_official_style(**inputs)
            assert len(calls) == 1 + cfg.num_dimensions
    finally:
        hook.remove()
    assert out.mu.shape == out.log_sigma.shape == (3, 2)
    assert out.mu.dtype == torch.float32 and torch.isfinite(out.mu).all() and torch.isfinite(out.log_sigma).all()
    torch.testing.assert_close(out.mu, official.mu, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.log_sigma, official.log_sigma, rtol=0, atol=1e-6)
    assert (out.mu[0] - out.mu[1]).abs().max() > 1e-3  # inputs matter


def test_right_padding_does_not_change_scores(tiny, batch):
    model, processor, cfg = tiny
    inputs, (sources, editeds) = batch
    builder = RewardInputBuilder(processor, cfg)
    with torch.no_grad():
        together = model(**inputs)
        for i in range(3):
            alone = model(**builder(sources[i:i + 1], INSTRUCTIONS[i:i + 1], editeds[i:i + 1]))
            torch.testing.assert_close(alone.mu[0], together.mu[i], rtol=0, atol=1e-5)


def test_shared_head_variant(batch):
    cfg = RewardModelConfig(head="shared")
    model, _ = build_reward_model(cfg)
    assert len(model.heads) == 1 and model.heads[0][-1].out_features == 2 * cfg.num_dimensions
    with torch.no_grad():
        out, official = model.eval()(**batch[0]), model.forward_official_style(**batch[0])
    assert out.mu.shape == (3, 2)
    torch.testing.assert_close(out.mu, official.mu, rtol=0, atol=1e-6)


def test_gradients_reach_heads_llm_and_vision(batch):
    model, _ = build_reward_model(RewardModelConfig(gradient_checkpointing=True))
    model.train()
    out = model(**batch[0])
    (out.mu.sum() + out.log_sigma.sum()).backward()
    named = dict(model.named_parameters())
    for name in ["heads.0.0.weight", "heads.1.5.weight", "backbone.language_model.layers.0.self_attn.q_proj.weight",
                 "backbone.language_model.embed_tokens.weight", "backbone.visual.blocks.0.attn.qkv.weight"]:
        grad = named[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_freeze_vision_and_lora_train_only_what_they_should(batch):
    model, _ = build_reward_model(RewardModelConfig(lora_r=4, freeze_vision=True))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("heads.") for n in trainable)
    assert any("language_model" in n and "lora_A" in n for n in trainable)
    out = model.train()(**batch[0])
    out.mu.sum().backward()
    lora_grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_grads and all(g is not None for g in lora_grads)


def test_checkpoint_round_trip_gives_identical_scores(tmp_path, tiny, batch):
    model, processor, cfg = tiny
    ckpt = save_checkpoint(model, processor, cfg, tmp_path / "ckpt", extra={"step": 7})
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "reward_config.yaml").is_file()
    loaded, loaded_processor, loaded_cfg = load_checkpoint(ckpt)
    assert loaded_cfg == cfg and isinstance(loaded, EditRewardModel)
    tensors = list(loaded.parameters()) + list(loaded.buffers())
    assert not any(t.is_meta for t in tensors)  # built on "meta", every weight and buffer is real after loading
    assert all(p.dtype == torch.float32 for p in loaded.heads.parameters())
    reloaded_inputs = RewardInputBuilder(loaded_processor, loaded_cfg)(*_raw(batch))
    assert torch.equal(reloaded_inputs["input_ids"], batch[0]["input_ids"])
    with torch.no_grad():
        a, b = model(**batch[0]), loaded(**reloaded_inputs)
    assert torch.equal(a.mu, b.mu) and torch.equal(a.log_sigma, b.log_sigma)


def _raw(batch):
    sources, editeds = batch[1]
    return sources, INSTRUCTIONS, editeds


def test_bad_checkpoints_give_clear_errors(tmp_path, tiny):
    model, processor, cfg = tiny
    with pytest.raises(DataError, match="not found"):
        load_checkpoint(tmp_path / "nope")
    ckpt = save_checkpoint(model, processor, cfg, tmp_path / "ckpt")

    (ckpt / "reward_config.yaml").rename(ckpt / "moved.yaml")
    with pytest.raises(DataError, match="reward_config.yaml"):
        load_checkpoint(ckpt)
    (ckpt / "moved.yaml").rename(ckpt / "reward_config.yaml")

    (ckpt / "model.safetensors").rename(ckpt / "moved.safetensors")
    with pytest.raises(DataError, match="no weights"):
        load_checkpoint(ckpt)
    (ckpt / "moved.safetensors").rename(ckpt / "model.safetensors")

    wider = dataclasses.asdict(cfg) | {"head_width": cfg.head_width * 2}
    (ckpt / "reward_config.yaml").write_text(yaml.safe_dump(wider))
    with pytest.raises(DataError, match=r"tensor 'heads\.0\.0\.(weight|bias)' has shape"):
        load_checkpoint(ckpt)

    (ckpt / "reward_config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(cfg)))
    (ckpt / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DataError, match="cannot read"):
        load_checkpoint(ckpt)


def test_local_vlm_checkpoint_loads_as_backbone_and_gains_the_reward_token(tmp_path, tiny):
    """A Qwen2_5_VLForConditionalGeneration folder (what Qwen2.5-VL / MiMo-VL ship) loads without its LM head."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    model, processor, cfg = tiny
    full = Qwen2_5_VLForConditionalGeneration(model.core.config)
    full.save_pretrained(tmp_path / "vlm", safe_serialization=True)
    processor.save_pretrained(tmp_path / "vlm")
    real_cfg = RewardModelConfig(backbone=str(tmp_path / "vlm"), reward_token="<|score|>")
    reward_model, real_processor = build_reward_model(real_cfg)
    emb = reward_model.core.get_input_embeddings().weight
    assert emb.shape[0] == len(real_processor.tokenizer) == len(processor.tokenizer) + 1
    torch.testing.assert_close(emb[:-1], full.model.language_model.embed_tokens.weight)
    out = reward_model.eval()(**RewardInputBuilder(real_processor, real_cfg)([_image(32, 32, 0)], ["add a star"],
                                                                             [_image(32, 32, 1)]))
    assert out.mu.shape == (1, 2)
    with pytest.raises(DataError, match="local checkpoint directory"):
        build_reward_model(RewardModelConfig(backbone="Qwen/Qwen2.5-VL-7B-Instruct"))


def test_clip_prompt_shows_the_source_only_inside_the_clip():
    cfg = RewardModelConfig(edited_input="pair_clip", pixel_area=1024, prompt="clip")
    cfg.tiny.vision_patch_size = 4
    _, processor = build_reward_model(cfg)
    builder = RewardInputBuilder(processor, cfg)
    src, ed = _image(32, 32, 1), _image(32, 32, 2)
    full = builder([src], INSTRUCTIONS[:1], [ed])
    prefix = builder.prefixes([src], INSTRUCTIONS[:1])
    assert "pixel_values" not in full and "pixel_values" not in prefix  # no still image anywhere
    assert full["video_grid_thw"].tolist() == [[1, 8, 8]]
    assert full["input_ids"][0].tolist()[:prefix["input_ids"].shape[1]] == prefix["input_ids"][0].tolist()
    with pytest.raises(ValueError, match="pair_clip"):
        RewardModelConfig(prompt="clip")
