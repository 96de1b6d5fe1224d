"""The tiny editworld editor: packing, sampling (ODE determinism, SDE log-probs), LoRA reference, files."""

import numpy as np
import pytest
import torch
from PIL import Image

from editrl.io import DataError
from rollout.sde import sde_step_with_logprob
from rollout.tiny_editor import TinyEditor, TinyEditorConfig, pack_pixels, unpack_pixels

SMALL = TinyEditorConfig(image_size=16, patch=4, num_heads=2, head_dim=16, axes_dims_rope=(4, 6, 6), double_layers=1,
                         single_layers=1, text_hidden=32, text_layers=1, text_heads=2, max_text_length=12)


@pytest.fixture(scope="module")
def editor():
    torch.manual_seed(0)
    return TinyEditor.from_config(SMALL, seed=0)


def _images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    arr = (torch.rand(n, 16, 16, 3, generator=g) * 255).to(torch.uint8).numpy()
    return [Image.fromarray(a) for a in arr]


INSTR = ["make the red circle blue", "remove the green square", "add a cyan triangle at the top left"]


def test_pack_unpack_roundtrip_and_token_layout():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    tokens = pack_pixels(x, 4)
    assert tokens.shape == (2, 4, 48)
    # token 1 is the top-right 4x4 square; its first channel-0 value is pixel (0, 4)
    assert tokens[0, 1, 0] == x[0, 0, 0, 4]
    assert torch.equal(unpack_pixels(tokens, 4, 8, 8), x)


def test_shapes_and_zero_latent_is_a_noop(editor):
    sources = _images(3)
    cond = editor.prepare(sources, INSTR)
    assert cond.source_tokens.shape == (3, 16, 48) and cond.prompt_embeds.shape == (3, 12, 32)
    assert cond.image_ids.shape == (32, 3) and cond.image_ids[:16, 0].eq(0).all() and cond.image_ids[16:, 0].eq(1).all()
    v = editor.velocity(torch.randn(3, 16, 48), 0.5, cond)
    assert v.shape == (3, 16, 48)
    # residual latents: the all-zero latent decodes to the source, pixel for pixel
    out = editor.decode(torch.zeros(3, 16, 48), cond)
    assert all(np.array_equal(np.asarray(o), np.asarray(s)) for o, s in zip(out, sources))
    targets = _images(3, seed=1)
    back = editor.decode(editor.encode_targets(targets, cond), cond)
    assert all(np.array_equal(np.asarray(o), np.asarray(t)) for o, t in zip(back, targets))


def test_conditioning_groups(editor):
    cond = editor.prepare(_images(2), INSTR[:2])
    group = cond.repeat_interleave(3)
    assert group.batch_size == 6
    assert torch.equal(group.prompt_embeds[3], cond.prompt_embeds[1])
    assert torch.equal(cond.index([1, 0]).source_tokens[0], cond.source_tokens[1])


def test_ode_sampling_is_deterministic_for_a_seed(editor):
    cond = editor.prepare(_images(2), INSTR[:2])
    a = editor.sample(cond, 4, generator=torch.Generator().manual_seed(3), return_trajectory=True)
    b = editor.sample(cond, 4, generator=torch.Generator().manual_seed(3))
    c = editor.sample(cond, 4, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.latents_final, b.latents_final)
    assert not torch.equal(a.latents_final, c.latents_final)
    t = a.trajectory
    assert t.latents.shape == (2, 5, 16, 48) and t.sigmas.shape == (5,) and t.log_probs.shape == (2, 4)
    assert t.sigmas[0] == 1 and t.sigmas[-1] == 0 and torch.all(t.log_probs == 0) and torch.all(t.stds == 0)
    assert torch.equal(t.latents[:, -1], a.latents_final)
    assert len(a.images) == 2 and a.images[0].size == (16, 16)


def test_sde_log_probs_match_recomputation(editor):
    cond = editor.prepare(_images(2), INSTR[:2]).repeat_interleave(2)
    out = editor.sample(cond, 5, noise_level=0.7, generator=torch.Generator().manual_seed(0), return_trajectory=True)
    t = out.trajectory
    assert t.means.shape == (4, 5, 16, 48) and t.stds.shape == (5,) and torch.all(t.stds > 0)
    for i in range(5):
        with torch.no_grad():
            v = editor.velocity(t.latents[:, i], t.sigmas[i], cond)
        _, logp, mean, std = sde_step_with_logprob(v, t.latents[:, i], t.sigmas[i], t.sigmas[i + 1], 0.7,
                                                   prev_sample=t.latents[:, i + 1])
        assert torch.allclose(logp, t.log_probs[:, i], atol=1e-4)
        assert torch.allclose(mean, t.means[:, i], atol=1e-5)
        assert std.reshape(-1)[0].item() == pytest.approx(t.stds[i].item())
    # samples of one group differ: the SDE noise is per sample
    assert not torch.equal(t.latents[0, -1], t.latents[1, -1])


def test_sde_steps_window_keeps_other_steps_deterministic(editor):
    cond = editor.prepare(_images(1), INSTR[:1])
    t = editor.sample(cond, 4, noise_level=0.8, generator=torch.Generator().manual_seed(0), return_trajectory=True,
                      sde_steps=[1, 2]).trajectory
    assert torch.all(t.log_probs[:, [0, 3]] == 0) and torch.all(t.log_probs[:, [1, 2]] != 0)
    assert t.stds[0] == 0 and t.stds[3] == 0 and t.stds[1] > 0
    with pytest.raises(ValueError, match="sde_steps"):
        editor.sample(cond, 4, noise_level=0.8, sde_steps=[7])


def test_lora_reference_reproduces_base_outputs():
    ed = TinyEditor.from_config(SMALL, seed=1)
    cond = editor_cond = ed.prepare(_images(2), INSTR[:2])
    x = torch.randn(2, 16, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base = ed.velocity(x, 0.6, editor_cond)
    params = ed.add_lora(rank=4, alpha=8)
    assert params and all(p.requires_grad for p in params)
    assert not any(p.requires_grad for n, p in ed.transformer.named_parameters() if "lora_" not in n)
    assert not any(p.requires_grad for p in ed.text_encoder.parameters())
    with torch.no_grad():
        for n, p in ed.transformer.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
        adapted = ed.velocity(x, 0.6, cond)
        with ed.reference():
            ref = ed.velocity(x, 0.6, cond)
        again = ed.velocity(x, 0.6, cond)
    assert not torch.allclose(adapted, base, atol=1e-4)
    assert torch.allclose(ref, base, atol=1e-6)
    assert torch.allclose(again, adapted)
    # gradients reach the LoRA weights only
    ed.velocity(x, 0.6, cond).square().mean().backward()
    assert all(p.grad is not None for p in params)


def test_save_and_load_roundtrip(editor, tmp_path):
    editor.save_pretrained(tmp_path / "ed")
    assert list((tmp_path / "ed" / "transformer").glob("*.safetensors"))
    assert not list((tmp_path / "ed").rglob("*.bin"))
    loaded = TinyEditor.from_pretrained(tmp_path / "ed")
    assert loaded.config == editor.config
    cond_a, cond_b = editor.prepare(_images(2), INSTR[:2]), loaded.prepare(_images(2), INSTR[:2])
    x = torch.randn(2, 16, 48)
    with torch.no_grad():
        assert torch.allclose(editor.velocity(x, 0.3, cond_a), loaded.velocity(x, 0.3, cond_b), atol=1e-6)


def test_registry_loads_a_tiny_folder_and_bad_folders_are_named(editor, tmp_path):
    from rollout.registry import load_editor

    editor.save_pretrained(tmp_path / "ed")
    assert isinstance(load_editor(str(tmp_path / "ed")), TinyEditor)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="editor_config.json"):
        TinyEditor.from_pretrained(tmp_path / "empty")


def test_unknown_words_become_unk(editor):
    ids = editor.tokenizer(["make the red circle zebra"])["input_ids"][0]
    assert ids[0] == 2 and ids[-1] == 3 and 1 in ids


def test_channel_source_conditioning():
    """source_conditioning=channels: the source rides in each noisy token's channels (L tokens, not 2L)."""
    from dataclasses import replace

    ed = TinyEditor.from_config(replace(SMALL, source_conditioning="channels"), seed=0)
    cond = ed.prepare(_images(2), INSTR[:2])
    assert cond.image_ids.shape == (16, 3) and cond.image_ids[:, 0].eq(0).all()
    x = torch.randn(2, 16, 48)
    v = ed.velocity(x, torch.tensor(0.5), cond)
    assert v.shape == (2, 16, 48)
    # the prediction depends on the source (it is an input), and a zero latent is still a no-op
    other = ed.prepare(_images(2, seed=1), INSTR[:2])
    assert not torch.allclose(v, ed.velocity(x, torch.tensor(0.5), replace(other, prompt_embeds=cond.prompt_embeds,
                                                                             pooled_prompt_embeds=cond.pooled_prompt_embeds)))
    src = ed.decode(torch.zeros(2, 16, 48), cond, output_type="pt")
    assert torch.allclose(src * 2 - 1, unpack_pixels(cond.source_tokens, 4, 16, 16), atol=1e-6)
    sample = ed.sample(cond, num_steps=2, generator=torch.Generator().manual_seed(0))
    assert len(sample.images) == 2
    with pytest.raises(ValueError, match="source_conditioning"):
        TinyEditor.from_config(replace(SMALL, source_conditioning="pixels"))
