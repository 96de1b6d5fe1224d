"""An RL run resumes only with the inputs its checkpoints were trained on: an edited prompt manifest, another
reward checkpoint or a changed training setting is refused, naming it and how to start over (resume=false);
an unchanged rerun, or one that only trains longer, resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from editrl.config import ConfigError, load_config
from policy.config import GRPOConfig, check_run_inputs, run_fingerprint
from policy.grpo import train_grpo
from tests.curation.test_scoring import BrightnessScorer


@pytest.fixture(autouse=True)
def one_thread():
    """threads=1 in the runs below (a step takes 0.3 s with 1 thread, 5-8 s with 2 on a busy 2-core machine)."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _manifest(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"s{i}.png")
        rows.append(json.dumps({"source": f"s{i}.png", "instruction": f"make it brighter {i}"}))
    (folder / "manifest.jsonl").write_text("\n".join(rows) + "\n")
    return folder / "manifest.jsonl"


def _cfg(manifest, out, *overrides):
    return load_config(GRPOConfig, None, [
        f"out={out}", "steps=1", "checkpoint_every=1", "accelerate=false", "editor.spec=editworld-tiny",
        "editor.lora_rank=2", "editor.lora_alpha=4", "reward.log_oracle=false", "data.kind=manifest",
        f"data.manifest={manifest}", "data.prompts_per_step=1", "data.image_size=32", "sampling.group_size=2",
        "sampling.num_steps=2", "sampling.prompts_per_chunk=1", "train.micro_batch=2", "eval.num_tasks=0",
        "threads=1", *overrides])


def test_edited_manifest_or_setting_is_refused_unchanged_rerun_resumes(tmp_path, capsys):
    manifest, out = _manifest(tmp_path / "data"), tmp_path / "run"
    train_grpo(_cfg(manifest, out), BrightnessScorer())
    assert (out / "fingerprint.json").is_file() and (out / "checkpoints" / "step_000001").is_dir()
    train_grpo(_cfg(manifest, out, "steps=2"), BrightnessScorer())  # unchanged inputs, trained longer: resumes
    assert "resumed from" in capsys.readouterr().out
    assert (out / "checkpoints" / "step_000002").is_dir()

    manifest.write_text(manifest.read_text().replace("brighter 1", "darker 1"))
    with pytest.raises(ConfigError, match=r"holds checkpoints from other inputs; changed since: the prompt manifest "
                                          r".*manifest\.jsonl changed \(sha256:.* -> sha256:.*\)\. Rerun with "
                                          r"resume=false .* or with another out="):
        train_grpo(_cfg(manifest, out, "steps=3"), BrightnessScorer())
    with pytest.raises(ConfigError, match=r"sampling\.noise_level 0\.7 -> 0\.5"):
        train_grpo(_cfg(manifest, out, "steps=3", "sampling.noise_level=0.5"), BrightnessScorer())
    # resume=false trains from scratch and stores the new inputs; the next rerun resumes from them
    train_grpo(_cfg(manifest, out, "resume=false"), BrightnessScorer())
    train_grpo(_cfg(manifest, out, "steps=2"), BrightnessScorer())
    assert "resumed from" in capsys.readouterr().out


def test_another_reward_checkpoint_is_refused(tmp_path):
    from editrl.checkpoint import CheckpointStore

    manifest, out, reward = _manifest(tmp_path / "data"), tmp_path / "run", tmp_path / "reward"
    reward.mkdir()
    (reward / "model.safetensors").write_bytes(b"weights v1")
    cfg = _cfg(manifest, out, f"reward.client={reward}")
    out.mkdir()
    store = CheckpointStore(out)
    store.save(1, {"note": "a stand-in checkpoint"})
    check_run_inputs(cfg, out, store)  # no fingerprint yet: stored now
    check_run_inputs(cfg, out, store)  # same inputs
    (reward / "model.safetensors").write_bytes(b"weights v2")
    with pytest.raises(ConfigError, match=r"the reward checkpoint .*reward changed \(sha256:"):
        check_run_inputs(cfg, out, store)
    # the oracle reward reads no checkpoint: the reward folder is not an input then
    assert "reward checkpoint" not in run_fingerprint(_cfg(manifest, out, "reward.function=oracle"))["files"]
