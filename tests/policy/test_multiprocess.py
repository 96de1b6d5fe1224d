"""``accelerate launch --num_processes 2`` (CPU, gloo) of GRPO with the DGPO loss follows the one-process run.

Same global batch (2 prompts of 4 edits a step; one prompt per process, micro-batch 4 against 8), the same
sampled edits (per-chunk generators), the same update noise (per-group generators): the logged metrics and the
trained LoRA agree within float tolerance, and a checkpoint written by rank 0 resumes both processes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

CONFIG = {
    "seed": 1, "steps": 2, "checkpoint_every": 1, "threads": 1,
    "editor": {"spec": "editworld-tiny", "lora_rank": 4, "lora_alpha": 8},
    "reward": {"function": "oracle", "dimension": "mean", "log_oracle": False},
    "data": {"num_tasks": 8, "prompts_per_step": 2, "image_size": 32},
    "sampling": {"group_size": 4, "num_steps": 4, "noise_level": 0.7, "sde_window": 2, "prompts_per_chunk": 1},
    "train": {"policy_loss": "group_dpo", "learning_rate": 1.0e-2, "micro_batch": 4,
              "group_dpo": {"beta": 500.0, "timesteps_per_group": 2}},
    "eval": {"every": 0, "num_tasks": 4, "num_steps": 2, "batch_size": 4, "learned_reward": False},
}
KEYS = ("train/loss", "train/grad_norm", "reward_mean", "reward_std", "advantage_abs_mean", "train/trained_groups",
        "eval/oracle_instruction_following", "eval/oracle_visual_quality")


def _rows(out: Path) -> dict[int, dict]:
    return {r["step"]: r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}


def _launch(cfg: Path, *overrides: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # --multi_gpu selects accelerate's torchrun launcher; without CUDA the processes run on CPU with gloo
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
           str(port), "-m", "editrl.cli", "policy", "grpo", "--config", str(cfg), *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_two_processes_follow_one_and_resume(tmp_path):
    from editrl.cli import main

    cfg = tmp_path / "grpo.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    assert main(["policy", "grpo", "--config", str(cfg), f"out={tmp_path / 'one'}", "train.micro_batch=8"]) == 0
    _launch(cfg, f"out={tmp_path / 'two'}", "steps=1")     # interrupted after step 1 ...
    _launch(cfg, f"out={tmp_path / 'two'}")                # ... resumed by both processes from rank 0's checkpoint
    one, two = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert sorted(one) == sorted(two) == [0, 1, 2]
    for step in (1, 2):
        for key in KEYS:
            if key in one[step]:
                assert two[step][key] == pytest.approx(one[step][key], rel=1e-4, abs=1e-5), (step, key)
    assert one[1]["train/trained_groups"] == two[1]["train/trained_groups"] == 2
    a = load_file(tmp_path / "one/checkpoints/step_000002/lora.safetensors")
    b = load_file(tmp_path / "two/checkpoints/step_000002/lora.safetensors")
    for name in a:
        assert (a[name] - b[name]).abs().max() <= 1e-4 * (1 + a[name].abs().max()), name
