"""Step1X-Edit as an editrl editor: the diffusers-PR layout, registry detection, SDE log-probs, LoRA, batches,
clear errors for bad folders, and best-of-N / ``policy eval`` on the tiny checkpoint."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from step1x_tiny import DATA, golden, prompts, write_diffusers_pr, write_official, write_qwen

SMALL = {"size_level": 32}  # editworld-sized edits: 32x32 -> 4 tokens


def _image(seed: int, size: tuple[int, int] = (32, 32)) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(size[1], size[0], 3) * 255).astype("uint8"))


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    return write_qwen(tmp_path_factory.mktemp("qwen") / "qwen")


@pytest.fixture(scope="module")
def official(tmp_path_factory, qwen):
    return write_official(tmp_path_factory.mktemp("official") / "v1.1", "v1.1", qwen, options=SMALL)


@pytest.fixture(scope="module")
def editor(official):
    from rollout.registry import load_editor

    return load_editor(str(official), dtype="float32")  # a bare official folder is detected


def test_detection_version_and_the_diffusers_pr_layout_reproduce_the_official_velocity(editor, official, qwen,
                                                                                        tmp_path):
    from rollout.registry import detect_kind, load_editor
    from rollout.step1x import sampler
    from rollout.step1x_edit import Step1XEditEditor

    assert detect_kind(official) == "step1x-edit" and isinstance(editor, Step1XEditEditor)
    assert editor.version == "v1.1" and editor.transformer.connector.scale_factor is None
    assert editor.size_level == 32  # from step1x_config.json
    pr = load_editor(f"step1x-edit:{write_diffusers_pr(tmp_path / 'pr', qwen)}", dtype="float32", size_level=128)
    assert pr.version == "v1.1" and tuple(pr.transformer.dit.config.axes_dims_rope) == (8, 12, 12)
    gold = golden()
    cond = pr.prepare([Image.open(DATA / "images" / "source_nonsquare.png")], [prompts()["prompts"][0]])
    embs, masks = gold["encoder_tf451/nonsquare.embs"], gold["encoder_tf451/nonsquare.masks"]
    cond = replace(cond, embeds=embs[:1], mask=masks[:1], negative_embeds=embs[1:], negative_mask=masks[1:],
                   image_latents=sampler.pack(gold["vae_golden/nonsquare.latent_mean_scaled"]))
    x = sampler.pack(gold["dit_velocity_inputs/x_t_unpacked"])
    with torch.no_grad():
        v = pr.velocity(x, 0.95, cond)
    want = gold["dit_velocity_v1.1/sigma0.95.v_cfg"]  # the official layout's tolerance (test_step1x_golden._err)
    assert float((v - want).abs().max()) < 1e-5 * float(want.abs().max())
    with torch.no_grad():
        assert torch.equal(v, editor.velocity(x, 0.95, cond))  # the official layout's weights, bit for bit


def test_sde_sampling_records_log_probs_that_recompute(editor):
    from rollout.sde import sde_step_with_logprob

    cond = editor.prepare([_image(0)], ["make the circle blue"]).repeat_interleave(2)
    out = editor.sample(cond, num_steps=3, noise_level=0.7, generator=torch.Generator().manual_seed(1),
                        return_trajectory=True)
    traj = out.trajectory
    assert traj.latents.shape == (2, 4, 4, 64) and traj.log_probs.shape == (2, 3) and traj.stds.shape == (3,)
    assert len(out.images) == 2 and out.images[0].size == (32, 32)
    assert torch.isfinite(traj.log_probs).all() and (traj.log_probs != 0).all()
    assert not torch.allclose(traj.latents[0, -1], traj.latents[1, -1])  # same row, different SDE noise
    with torch.no_grad():
        for i in range(3):
            v = editor.velocity(traj.latents[:, i], traj.sigmas[i], cond)
            _, logp, mean, _ = sde_step_with_logprob(v, traj.latents[:, i], traj.sigmas[i], traj.sigmas[i + 1], 0.7,
                                                     prev_sample=traj.latents[:, i + 1])
            torch.testing.assert_close(logp, traj.log_probs[:, i], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(mean, traj.means[:, i], atol=1e-5, rtol=1e-4)
    window = editor.sample(cond, num_steps=3, noise_level=0.7, generator=torch.Generator().manual_seed(1),
                           return_trajectory=True, sde_steps=[1]).trajectory
    assert (window.log_probs[:, [0, 2]] == 0).all() and (window.log_probs[:, 1] != 0).all()


def test_lora_on_the_dit_and_optionally_the_connector(official):
    from rollout.step1x_edit import Step1XEditEditor

    editor = Step1XEditEditor.from_pretrained(str(official), dtype="float32")
    cond = editor.prepare([_image(2)], ["remove the square"])
    x = torch.randn(1, 4, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base = editor.velocity(x, 0.6, cond)
    params = editor.add_lora(rank=2, alpha=4, target_modules=["to_q", "to_k", "to_v", "self_attn_qkv"])
    names = [n for n, p in editor.transformer.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names) and len(params) == len(names)
    assert any(n.startswith("dit.") for n in names) and any(n.startswith("connector.") for n in names)
    with torch.no_grad():
        for p in params:  # lora_B starts at 0: move it so the adapter changes the output
            p.add_(0.05 * torch.randn_like(p))
        adapted = editor.velocity(x, 0.6, cond)
        with editor.reference():
            reference = editor.velocity(x, 0.6, cond)
    assert float((adapted - base).abs().max()) > 1e-3
    torch.testing.assert_close(reference, base)
    assert editor.velocity(x, 0.6, cond).requires_grad  # differentiable for the policy update


def test_batches_sizes_guidance_and_decode(editor, tmp_path):
    path = tmp_path / "src.png"
    _image(3, (48, 40)).save(path)
    cond = editor.prepare([str(path), _image(4)], ["make it red", "make it blue"])
    # the official resize: area 32 x 32 at 48:40 is 36 x 30, floored to multiples of 16; the batch takes the first
    # source's size
    assert (cond.width, cond.height) == editor.editing_size(Image.open(path)) == (32, 16)
    assert cond.source_sizes == [(48, 40), (32, 32)] and cond.embeds.shape == (2, 640, 32)
    assert cond.index([1, 1]).source_sizes == [(32, 32), (32, 32)]
    x = editor.initial_latents(cond, torch.Generator().manual_seed(0))
    with torch.no_grad():
        cfg, plain = editor.velocity(x, 0.5, cond), editor.velocity(x, 0.5, cond, guidance=1.0)
    assert cfg.shape == plain.shape == (2, 2, 64) and not torch.allclose(cfg, plain)
    images = editor.decode(x, cond)
    assert [im.size for im in images] == [(48, 40), (32, 32)]  # back to each source's size
    pixels = editor.decode(x, cond, output_type="pt")
    assert pixels.shape == (2, 3, 16, 32) and 0 <= float(pixels.min()) and float(pixels.max()) <= 1
    with pytest.raises(ValueError, match="2 sources but 1 instructions"):
        editor.prepare([_image(0), _image(1)], ["x"])


def test_bad_folders_name_what_is_wrong(official, qwen, tmp_path):
    import shutil

    from editrl.io import DataError
    from rollout.registry import load_editor

    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.safetensors", "b.safetensors"):
        shutil.copy(official / "step1x-edit-v1p1-official.safetensors", two / name)
    shutil.copy(official / "vae.safetensors", two / "vae.safetensors")
    (two / "Qwen2.5-VL-7B-Instruct").symlink_to(qwen, target_is_directory=True)
    with pytest.raises(DataError, match="found a.safetensors, b.safetensors: pass dit_file"):
        load_editor(f"step1x-edit:{two}")
    (two / "step1x_config.json").write_text(json.dumps({"axes": [8, 12, 12]}))
    with pytest.raises(DataError, match="step1x_config.json: field 'axes': unknown key"):
        load_editor(f"step1x-edit:{two}", dit_file="a.safetensors")
    (two / "step1x_config.json").unlink()
    with pytest.raises(DataError, match="pass axes_dims_rope"):
        load_editor(f"step1x-edit:{two}", dit_file="a.safetensors")
    with pytest.raises(DataError, match="pass connector_heads"):
        load_editor(f"step1x-edit:{two}", dit_file="a.safetensors", axes_dims_rope=(8, 12, 12))
    (two / "Qwen2.5-VL-7B-Instruct").unlink()
    with pytest.raises(DataError, match="expected one Qwen2.5-VL subfolder"):
        load_editor(f"step1x-edit:{two}", dit_file="a.safetensors")


def test_best_of_n_and_policy_eval_run_on_it(official, tmp_path, capsys):
    from editrl.cli import main
    from tiny_pipelines import write_tiny_reward

    reward = write_tiny_reward(tmp_path / "reward", seed=0)
    source = tmp_path / "source.png"
    _image(5).save(source)
    out = tmp_path / "bon"
    assert main(["best-of-n", "--editor", f"step1x-edit:{official}", "--reward", str(reward), "--n", "2",
                 "--source", str(source), "--instruction", "make the circle blue", "--steps", "2",
                 "--out", str(out), "--no-progress"]) == 0
    doc = json.loads((out / "scores.json").read_text())
    assert doc["n"] == 2 and Image.open(out / "chosen.png").size == (32, 32)
    grid = tmp_path / "grid.png"
    assert main(["policy", "eval", "--editor", str(official), "--tasks", "2", "--steps", "2", "--batch-size", "2",
                 "--grid", str(grid)]) == 0
    assert grid.stat().st_size > 0 and "instruction_following" in capsys.readouterr().out
