"""``editrl gpu-check --dry-run``: every part of the GPU check runs on CPU at tiny shapes and reports its figures."""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "docs" / "performance" / "README.md"


def _run_file(out: Path) -> dict:
    files = sorted(out.glob("*-dry-run.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def _figures(data: dict, part: str) -> dict[str, dict]:
    entry = data["parts"][part]
    assert entry["status"] == "done", entry["status"]
    return {f["name"]: f for f in entry["figures"]}


def _positive(fig: dict) -> float:
    assert fig["value"] is not None and fig["value"] > 0, fig
    return fig["value"]


def test_dry_run_of_the_reward_editor_and_grpo_parts(tmp_path):
    """One process, three parts (as `--part` repeated): the run file names the device, versions and commit, and
    holds every figure; the README table is regenerated with them."""
    shutil.copy(README, tmp_path / "README.md")
    cmd = [sys.executable, "-m", "editrl.gpu_check", "--dry-run", "--out", str(tmp_path),
           "--part", "reward", "--part", "editor", "--part", "grpo"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[editor] kontext forward 32:" in proc.stdout  # figures are printed as they come
    data = _run_file(tmp_path)
    assert data["dry_run"] is True and data["device"] == "cpu"
    assert data["torch"] and len(data["git_commit"]) == 40

    reward = _figures(data, "reward")
    styles = [n for n in reward if n != "reward model build"]
    assert styles[0].startswith("official-style") and "shared prefix, G=8" in styles
    assert any(n.startswith("one pass, batched") for n in styles)
    for name in styles:
        assert _positive(reward[name]) and reward[name]["unit"] == "edits/s"
    assert reward["shared prefix, G=8"]["goal"] == ">= 35"
    assert data["parts"]["reward"]["info"]["tokens_per_edit"] > 0

    editor = _figures(data, "editor")
    for name in ("kontext forward 32", "kontext forward 64", "qwen-image forward 32", "SDE step with log-prob / forward time",
                 "LoRA r 32 train step 32, batch 2, gradient checkpointing"):
        _positive(editor[name])
    loop = editor["rollout loop / bare forward (VAE decode excluded)"]
    assert _positive(loop) and loop["goal"] == ">= 0.95" and loop["met"] in (True, False)
    assert editor["kontext build (meta -> device, random init)"]["parameters"] > 0
    for name in ("step1x forward 32", "step1x forward 64", "step1x connector forward"):
        assert math.isfinite(_positive(editor[name])), editor[name]
    assert editor["step1x forward 64"]["tokens"] == 2 * (64 // 16) ** 2 + 16  # target + source tokens, text rows
    assert 0 < editor["step1x connector forward"]["share_of_forward"] < math.inf
    build = editor["step1x build (meta -> device, random init)"]
    assert build["parameters"] > build["connector_parameters"] > 0

    grpo = _figures(data, "grpo")
    for name in ("grpo sample", "grpo score", "grpo update", "grpo step"):
        _positive(grpo[name])
    share = grpo["reward share (score / (sample + score + update))"]
    assert 0 < share["value"] < 1 and share["goal"] == "<= 0.10"
    assert data["parts"]["grpo"]["info"]["edits"] == 2 * 8

    table = (tmp_path / "README.md").read_text()
    assert "(dry run: CPU, tiny shapes" in table and "| editor | kontext forward 64 |" in table
    assert "No run yet" not in table
    assert table.startswith(README.read_text().split("## Results")[0])  # only the results section changed


def test_step1x_full_sizes_are_the_release_shapes():
    """The full-size Step1X-Edit DiT and connector of the editor part have exactly the v1.1 release's tensors
    (tests/data/step1x/full_size_keys.json.gz), and the adapter's velocity runs on them at 1024 (meta device)."""
    import torch
    from diffusers import FluxTransformer2DModel

    from editrl.gpu_check_common import FULL
    from rollout.step1x import convert, sampler
    from rollout.step1x.connector import Step1XConnector
    from rollout.step1x_edit import Step1XConditioning, Step1XEditEditor, Step1XTransformer

    doc = json.loads(gzip.open(ROOT / "tests" / "data" / "step1x" / "full_size_keys.json.gz").read())
    with torch.device("meta"):
        state = {k: torch.empty(v["shape"]) for k, v in doc["v1.1"]["keys"].items()}
        dit, conn = convert.split_connector(state)
        flux = {k: tuple(v.shape) for k, v in convert.official_to_flux(dit).items()}
        release = Step1XConnector.from_shapes({convert.CONNECTOR_PREFIX + k: tuple(v.shape) for k, v in conn.items()})
        tf = Step1XTransformer(FluxTransformer2DModel(**FULL.step1x), Step1XConnector(**FULL.step1x_connector))
    assert convert.dit_config(flux) == dict(FULL.step1x, axes_dims_rope=tuple(FULL.step1x["axes_dims_rope"]))
    assert {k: v.shape for k, v in tf.dit.state_dict().items()} == flux
    shapes = {k: v.shape for k, v in release.state_dict().items()}
    assert {k: v.shape for k, v in tf.connector.state_dict().items()} == shapes
    editor = Step1XEditEditor(tf.to(torch.bfloat16), vae=None, encoder=None, version="v1.1", negative_prompt=None)
    meta = dict(device="meta")
    cond = Step1XConditioning(embeds=torch.empty((1, FULL.step1x_text_tokens, 3584), dtype=torch.bfloat16, **meta),
                              mask=torch.ones((1, FULL.step1x_text_tokens), dtype=torch.long, **meta),
                              image_latents=torch.empty((1, 64 * 64, 64), **meta),
                              latent_ids=sampler.image_ids(64, 64, "v1.1").to("meta"), height=1024, width=1024,
                              source_sizes=[(1024, 1024)])
    assert editor.velocity(torch.empty((1, 64 * 64, 64), **meta), 0.5, cond, guidance=1.0).shape == (1, 4096, 64)


def test_table_marks_cut_off_parts_and_judges_goals(tmp_path):
    """--mark records a part its timeout cut off; the table shows it, and a figure below its goal is a 'no'."""
    from editrl.cli import main

    shutil.copy(README, tmp_path / "README.md")
    run = tmp_path / "2026-01-01-nvidia-h100.json"
    run.write_text(json.dumps({
        "gpu_check": 1, "date": "2026-01-01", "dry_run": False, "device": "NVIDIA H100", "torch": "2.x", "cuda": "12.8",
        "git_commit": "a" * 40, "git_dirty": False, "parts": {"reward": {"status": "running", "info": {}, "figures": [
            {"name": "shared prefix, G=8", "value": 30.0, "unit": "edits/s", "memory_gib": 17.2, "goal": ">= 35",
             "anchor": "~35", "met": False, "note": None}]}}}))
    assert main(["gpu-check", "--out", str(tmp_path), "--json", str(run), "--mark", "reward=cut off by its 100s timeout"]) == 0
    assert main(["gpu-check", "--out", str(tmp_path), "--table"]) == 0
    table = (tmp_path / "README.md").read_text()
    assert "| reward | *cut off by its 100s timeout* |" in table
    assert "| reward | shared prefix, G=8 | 30 edits/s | 17.2 GiB | >= 35 | ~35 | **no** |" in table
    assert "### 2026-01-01, NVIDIA H100" in table


def test_table_refuses_a_readme_without_markers(tmp_path):
    from editrl.gpu_check import write_table
    from editrl.io import DataError

    (tmp_path / "README.md").write_text("# perf\n")
    with pytest.raises(DataError, match="results markers"):
        write_table(tmp_path)


def test_goal_judgement():
    from editrl.gpu_check_common import goal_met

    assert goal_met(">= 35", 36.0) is True and goal_met(">= 35", 34.9) is False
    assert goal_met("<= 0.10", 0.05) is True and goal_met("<= 0.10", 0.2) is False
    assert goal_met(None, 1.0) is None and goal_met(">= 1", None) is None


def test_the_script_rejects_unknown_arguments():
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--bogus"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown argument --bogus" in proc.stderr


@pytest.mark.slow  # the DeepSpeed part: on a fresh machine DeepSpeed JIT-compiles a CPU communication op (~3 min)
def test_the_script_dry_runs_every_part_including_deepspeed(tmp_path):
    """scripts/gpu_check.sh --dry-run: each part in its own process under its timeout, the ZeRO-2 step included."""
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "GPU_CHECK_TIMEOUT_SCALE": "3", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = _run_file(tmp_path)
    assert set(data["parts"]) == {"reward", "editor", "grpo", "reward-train"}
    train = _figures(data, "reward-train")
    assert "does not fit one GPU" in train["full fine-tune (paper setting)"]["note"]  # as on one H100 or H200
    step = train["reward train step (ZeRO-2, LoRA r 64)"]
    assert _positive(step) and step["unit"] == "tokens/s"
    assert data["parts"]["reward-train"]["info"]["trainable_parameters"] > 0
    assert "| reward-train | reward train step (ZeRO-2, LoRA r 64) |" in (tmp_path / "README.md").read_text()
    assert data["parts"]["reward-train"]["info"]["tokens_per_step"] > 0
