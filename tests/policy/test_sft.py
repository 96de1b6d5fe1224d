"""Flow-matching SFT through the real CLI: loss goes down, resume is exact, bad manifests are named."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from editrl.cli import main
from editrl.metrics import read_metrics
from policy.sft import ema_decay_at, lr_factor, sample_sigmas
from policy.sft_config import SFTConfig

TINY = ["editor.tiny.image_size=16", "editor.tiny.patch=4", "editor.tiny.num_heads=2", "editor.tiny.head_dim=16",
        "editor.tiny.axes_dims_rope=[4,6,6]", "editor.tiny.double_layers=1", "editor.tiny.single_layers=1",
        "editor.tiny.text_hidden=32", "editor.tiny.text_layers=1", "editor.tiny.text_heads=2",
        "editor.tiny.max_text_length=12", "train.threads=1", "train.warmup_steps=2", "eval.num_tasks=0",
        "save_to=null", "log_every=1"]


def _manifest(tmp_path, n=4):
    """Rows whose target is the source with one colour block painted: learnable, and fixed."""
    rng = np.random.default_rng(0)
    rows = []
    words = ["make the red circle blue", "remove the green square", "add a cyan triangle at the top left",
             "change the background to white"]
    for i in range(n):
        src = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        tgt = src.copy()
        tgt[4 * i:4 * i + 4, :8] = [255, 0, 0]
        Image.fromarray(src).save(tmp_path / f"s{i}.png")
        Image.fromarray(tgt).save(tmp_path / f"t{i}.png")
        rows.append({"source": f"s{i}.png", "instruction": words[i % 4], "target": f"t{i}.png"})
    path = tmp_path / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _run(out, manifest, *extra):
    return main(["policy", "sft", "--config", "configs/policy/editworld-sft.yaml", "--no-progress", *TINY,
                 f"out={out}", f"data.source={manifest}", "train.batch_size=4", *extra])


def test_sft_cli_loss_finite_and_decreasing(tmp_path):
    manifest = _manifest(tmp_path)
    assert _run(tmp_path / "run", manifest, "train.max_steps=30", "train.learning_rate=3e-3",
                "checkpoint_every=0") == 0
    losses = [r["loss"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert len(losses) == 30 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    for name in ("loss.png", "config.yaml", "summary.json", "final/editor_config.json"):
        assert (tmp_path / "run" / name).is_file()


def test_resume_is_exact(tmp_path):
    manifest = _manifest(tmp_path)
    assert _run(tmp_path / "straight", manifest, "train.max_steps=4", "checkpoint_every=2") == 0
    assert _run(tmp_path / "split", manifest, "train.max_steps=2", "checkpoint_every=2") == 0
    assert _run(tmp_path / "split", manifest, "train.max_steps=4", "checkpoint_every=2") == 0
    a = load_file(tmp_path / "straight/checkpoints/step_000004/model.safetensors")
    b = load_file(tmp_path / "split/checkpoints/step_000004/model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    oa = load_file(tmp_path / "straight/checkpoints/step_000004/optimizer.safetensors")
    ob = load_file(tmp_path / "split/checkpoints/step_000004/optimizer.safetensors")
    assert all(torch.equal(oa[k], ob[k]) for k in oa)
    # the resumed run logged steps 3 and 4 with the same losses as the straight one
    la = {r["step"]: r["loss"] for r in read_metrics(tmp_path / "straight/metrics.jsonl") if "loss" in r}
    lb = {r["step"]: r["loss"] for r in read_metrics(tmp_path / "split/metrics.jsonl") if "loss" in r}
    assert la == lb


def test_bad_manifest_row_is_named(tmp_path, capsys):
    """A bad row is a reject (named on stderr: file:line, field) and the run trains on the rest."""
    manifest = _manifest(tmp_path)
    with manifest.open("a") as f:
        f.write(json.dumps({"source": "s0.png", "instruction": "x"}) + "\n")
    assert _run(tmp_path / "bad", manifest, "train.max_steps=1") == 0
    err = capsys.readouterr().err
    assert "1 training rows rejected, 4 kept" in err and "manifest.jsonl:5: field 'target'" in err


def test_lr_schedule_by_hand():
    cfg = SFTConfig()
    cfg.train.warmup_steps, cfg.train.max_steps, cfg.train.min_lr_ratio = 10, 110, 0.1
    assert lr_factor(0, cfg) == pytest.approx(0.1)  # (0 + 1) / 10
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(60, cfg) == pytest.approx(0.55)  # half-way: 0.1 + 0.9 * 0.5
    assert lr_factor(110, cfg) == pytest.approx(0.1)
    cfg.train.schedule = "constant"
    assert lr_factor(60, cfg) == 1.0


def test_sigma_shift():
    g = torch.Generator().manual_seed(0)
    u = sample_sigmas(1000, "uniform", 1.0, g)
    s = sample_sigmas(1000, "uniform", 3.0, torch.Generator().manual_seed(0))
    assert torch.allclose(s, 3 * u / (1 + 2 * u)) and (s > u).all() and u.min() > 0 and u.max() < 1


def test_ema_warmup_keeps_the_random_init_out_of_the_average():
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(10, 0.999) == pytest.approx(11 / 20)
    assert ema_decay_at(100_000, 0.999) == 0.999
    # weight left on the initial weights after 1,500 steps: negligible with the warm-up, 22% without
    left = np.prod([ema_decay_at(k, 0.999) for k in range(1500)])
    assert left < 1e-3 and 0.999**1500 > 0.2


def test_final_editor_carries_the_ema_weights(tmp_path):
    """With ema_decay the saved (and evaluated) editor is the average, not the last iterate."""
    manifest = _manifest(tmp_path)
    assert _run(tmp_path / "ema", manifest, "train.max_steps=3", "train.ema_decay=0.5", "checkpoint_every=0") == 0
    assert _run(tmp_path / "raw", manifest, "train.max_steps=3", "checkpoint_every=0") == 0
    ema_ckpt = load_file(tmp_path / "ema" / "checkpoints" / "step_000003" / "ema.safetensors")
    ema_final = load_file(tmp_path / "ema" / "final" / "transformer" / "diffusion_pytorch_model.safetensors")
    raw_final = load_file(tmp_path / "raw" / "final" / "transformer" / "diffusion_pytorch_model.safetensors")
    name = next(k for k in raw_final if k.endswith("proj_out.weight"))
    assert torch.allclose(ema_final[name], ema_ckpt[f"transformer.{name}"])
    assert not torch.allclose(ema_final[name], raw_final[name])
