"""QwenImageEditEditor on a tiny random-weight Qwen-Image-Edit checkpoint saved to disk and loaded back.

The real pipeline always resizes the source to ~1024x1024 pixels of area (``calculate_dimensions``); the
adapter's ``resolution`` sets that area, and the parity test points the pipeline's helper at the same small
area so the comparison runs in seconds on a CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tiny_pipelines import write_tiny_qwen_edit

RES = 64  # source and output area RES**2 -> 64x64 pixels, VAE scale 4, 8x8 = 64 tokens
INSTRUCTIONS = ["recolour the red circle to blue", "remove the square"]


def _image(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(size[1], size[0], 3) * 255).astype("uint8"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_qwen_edit(tmp_path_factory.mktemp("qwen") / "ckpt")


@pytest.fixture(scope="module")
def editor(checkpoint):
    from rollout.qwen_image_edit import QwenImageEditEditor

    return QwenImageEditEditor.from_pretrained(str(checkpoint), dtype=torch.float32, resolution=RES)


def test_shapes_and_trajectory(editor):
    cond = editor.prepare([_image(0), _image(1)], INSTRUCTIONS)
    assert (cond.height, cond.width, cond.source_height, cond.source_width) == (64, 64, 64, 64)
    assert cond.negative_prompt_embeds is not None  # true CFG against " " by default
    out = editor.sample(cond, num_steps=3, noise_level=0.7, guidance=4.0,
                        generator=torch.Generator().manual_seed(0), return_trajectory=True)
    assert len(out.images) == 2 and all(im.size == (64, 64) for im in out.images)
    traj = out.trajectory
    assert traj.latents.shape == (2, 4, 64, 16) and traj.means.shape == (2, 3, 64, 16)
    assert traj.log_probs.shape == (2, 3) and torch.isfinite(traj.log_probs).all()
    assert traj.sigmas.shape == (4,) and float(traj.sigmas[-1]) == 0.0
    assert abs(float(traj.sigmas[-2]) - 0.02) < 1e-6  # the checkpoint's shift_terminal is honoured


@pytest.mark.parametrize("guidance", [1.0, 4.0])
def test_ode_sampling_reproduces_the_pipeline(editor, checkpoint, monkeypatch, guidance):
    from diffusers import QwenImageEditPipeline
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit as module

    source = _image(3)
    cond = editor.prepare([source], INSTRUCTIONS[:1])
    ours = editor.sample(cond, num_steps=3, noise_level=0.0, guidance=guidance,
                         generator=torch.Generator().manual_seed(7), return_trajectory=True)

    original = module.calculate_dimensions
    monkeypatch.setattr(module, "calculate_dimensions", lambda area, ratio: original(RES * RES, ratio))
    pipe = QwenImageEditPipeline.from_pretrained(str(checkpoint), local_files_only=True, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(image=source, prompt=INSTRUCTIONS[0], negative_prompt=" ", true_cfg_scale=guidance,
                  num_inference_steps=3)
    ref_latents = pipe(**kwargs, generator=torch.Generator().manual_seed(7), output_type="latent").images
    ref_pixels = pipe(**kwargs, generator=torch.Generator().manual_seed(7), output_type="np").images
    torch.testing.assert_close(ours.trajectory.latents[:, -1].float(), ref_latents.float(), atol=1e-5, rtol=1e-4)
    assert np.abs(np.asarray(ours.images[0], dtype=np.float32) / 255.0 - ref_pixels[0]).max() <= 1.5 / 255
    assert ref_pixels.std() > 0.01


def test_guidance_changes_the_velocity(editor):
    cond = editor.prepare([_image(2)], INSTRUCTIONS[:1])
    x = torch.randn(1, 64, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain, guided = editor.velocity(x, 0.5, cond, guidance=1.0), editor.velocity(x, 0.5, cond, guidance=4.0)
    assert (plain - guided).abs().max() > 1e-4
    # the pipeline's rescale keeps the guided prediction at the conditional prediction's per-token norm
    torch.testing.assert_close(guided.norm(dim=-1), plain.norm(dim=-1), atol=1e-4, rtol=1e-4)


def test_recorded_log_probs_match_recomputation(editor):
    from rollout.sde import sde_step_with_logprob

    cond = editor.prepare([_image(4)], INSTRUCTIONS[:1]).repeat_interleave(2)
    out = editor.sample(cond, num_steps=3, noise_level=0.5, guidance=4.0,
                        generator=torch.Generator().manual_seed(1), return_trajectory=True)
    traj = out.trajectory
    assert not torch.allclose(traj.latents[0, -1], traj.latents[1, -1])
    with torch.no_grad():
        for i in range(3):
            v = editor.velocity(traj.latents[:, i], traj.sigmas[i], cond, guidance=4.0)
            _, logp, mean, _ = sde_step_with_logprob(v, traj.latents[:, i], traj.sigmas[i], traj.sigmas[i + 1], 0.5,
                                                     prev_sample=traj.latents[:, i + 1])
            torch.testing.assert_close(logp, traj.log_probs[:, i], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(mean.float(), traj.means[:, i].float(), atol=1e-5, rtol=1e-4)


def test_lora_reference_is_the_base_model(checkpoint):
    from rollout.qwen_image_edit import QwenImageEditEditor

    editor = QwenImageEditEditor.from_pretrained(str(checkpoint), dtype=torch.float32, resolution=RES)
    cond = editor.prepare([_image(5)], INSTRUCTIONS[:1])
    x = torch.randn(1, 64, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base = editor.velocity(x, 0.6, cond)
    params = editor.add_lora(rank=4, alpha=8)
    assert params and not any(p.requires_grad for n, p in editor.transformer.named_parameters() if "lora_" not in n)
    with torch.no_grad():
        for p in params:
            p.add_(0.05 * torch.randn_like(p))
        adapted = editor.velocity(x, 0.6, cond)
        with editor.reference():
            reference = editor.velocity(x, 0.6, cond)
    assert (adapted - base).abs().max() > 1e-3
    torch.testing.assert_close(reference, base)
    # gradients reach the LoRA weights through velocity (what GRPO needs)
    editor.velocity(x, 0.6, cond).pow(2).mean().backward()
    named = {n: p for n, p in editor.transformer.named_parameters() if "lora_" in n}
    without = sorted(n for n, p in named.items() if p.grad is None or p.grad.abs().sum() == 0)
    # only the last block's text-stream query and output projections cannot affect the image prediction
    last_text_only = ("transformer_blocks.1.attn.add_q_proj.", "transformer_blocks.1.attn.to_add_out.")
    assert without and all(n.startswith(last_text_only) for n in without), without
