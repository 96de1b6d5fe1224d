"""GRPO with the DGPO (group_dpo) update on the tiny Step1X-Edit checkpoint, through the real CLI: the LoRA on the
DiT and the connector trains, a run stopped after step 1 and resumed lands on the uninterrupted run's weights and
metrics, and the trained policy loads back through the registry. Plus: a DPO step, and the GPU preset's recipe (clipped loss on an
SDE window, CFG 6) at tiny size."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rollout"))

from step1x_tiny import write_official  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
           "self_attn_qkv"]  # the DiT's attention and the connector's refiner attention


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from reward.model.config import RewardModelConfig, TinyBackboneConfig
    from reward.model.editreward import build_reward_model, save_checkpoint

    root = tmp_path_factory.mktemp("step1x_rl")
    step1x = write_official(root / "step1x", "v1.1", options={"size_level": 32})  # 32 x 32 edits: 4 tokens
    torch.manual_seed(0)
    cfg = RewardModelConfig(tiny=TinyBackboneConfig(  # the small reward of tests/policy/test_online.py
        hidden_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
        vision_depth=1, vision_hidden_size=32, vision_num_heads=2, vision_intermediate_size=32,
        vision_fullatt_block_indexes=[0], vocab_merges=20))
    reward = save_checkpoint(*build_reward_model(cfg), cfg, root / "reward")
    return step1x, reward


def _write_config(path: Path, step1x: Path, reward: Path, out: Path, steps: int) -> Path:
    import yaml

    cfg = {
        "out": str(out), "seed": 5, "steps": steps, "checkpoint_every": 1, "keep_checkpoints": 5,
        "editor": {"spec": f"step1x-edit:{step1x}", "load_kwargs": {"dtype": "float32"}, "lora_rank": 2,
                   "lora_alpha": 4, "lora_targets": TARGETS},
        "reward": {"client": str(reward), "function": "editreward"},
        "data": {"num_tasks": 4, "prompts_per_step": 2, "image_size": 32},
        "sampling": {"group_size": 2, "num_steps": 2, "noise_level": 0.8, "prompts_per_chunk": 2},
        "train": {"policy_loss": "group_dpo", "learning_rate": 1e-2, "micro_batch": 2, "grad_accum": 2,
                  "group_dpo": {"beta": 500.0, "timesteps_per_group": 1}},
        "eval": {"every": 0, "num_tasks": 0},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def _rows(out: Path) -> dict[int, dict]:
    """The run's metrics by step, without the wall-clock timings."""
    from editrl.metrics import read_metrics

    rows = read_metrics(out / "metrics.jsonl")
    return {r["step"]: {k: v for k, v in r.items() if not k.startswith("time")} for r in rows}


def test_dgpo_trains_the_step1x_lora_and_resumes_exactly(assets, tmp_path):
    from safetensors.torch import load_file

    from editrl.cli import main
    from rollout.registry import load_editor

    step1x, reward = assets
    full, part = tmp_path / "full", tmp_path / "part"
    cfg_full = _write_config(tmp_path / "full.yaml", step1x, reward, full, 2)
    assert main(["policy", "grpo", "--config", str(cfg_full)]) == 0
    rows = _rows(full)
    assert {1, 2} <= set(rows)
    # step 1: LoRA B = 0, so the policy is its reference and every group's loss is exactly log 2
    assert rows[1]["train/loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert rows[1]["train/trained_groups"] == 2 and rows[1]["train/optimizer_steps"] == 1.0  # 2 groups, accum 2
    assert math.isfinite(rows[2]["train/loss"]) and rows[2]["train/loss"] != pytest.approx(math.log(2), abs=1e-6)
    assert "reward/mu_instruction_following" in rows[2]
    w1, w2 = (load_file(str(full / "checkpoints" / f"step_00000{s}" / "lora.safetensors")) for s in (1, 2))
    assert any(n.startswith("dit.") for n in w2) and any(n.startswith("connector.") for n in w2)
    assert all("lora_" in n and torch.isfinite(w).all() for n, w in w2.items())
    for part_name in ("dit.", "connector."):  # both adapters train: B leaves zero
        assert any(n.startswith(part_name) and "lora_B" in n and w2[n].abs().sum() > 0 for n in w2), part_name
    assert any(not torch.equal(w1[n], w2[n]) for n in w1)

    # stopped after step 1, then resumed to step 2: the same weights and the same metrics, bit for bit
    cfg_part = _write_config(tmp_path / "part.yaml", step1x, reward, part, 1)
    assert main(["policy", "grpo", "--config", str(cfg_part)]) == 0
    assert main(["policy", "grpo", "--config", str(cfg_part), "steps=2"]) == 0
    resumed = _rows(part)
    for step in (1, 2):
        assert resumed[step] == rows[step], step
    w_resumed = load_file(str(part / "checkpoints" / "step_000002" / "lora.safetensors"))
    assert sorted(w_resumed) == sorted(w2) and all(torch.equal(w_resumed[n], w2[n]) for n in w2)

    # the trained policy loads back from the run folder (the base spec and LoRA targets are in adapter.json)
    manifest = json.loads((full / "checkpoints" / "step_000002" / "adapter.json").read_text())
    assert manifest["editor"] == f"step1x-edit:{step1x}" and manifest["algorithm"] == "grpo/group_dpo"
    loaded = dict(load_editor(str(full)).transformer.named_parameters())
    assert all(torch.equal(loaded[n].detach(), w) for n, w in w2.items())


def test_dpo_step_on_the_step1x_checkpoint(assets, tmp_path):
    import yaml
    from safetensors.torch import load_file

    from editrl.cli import main

    step1x, reward = assets
    path = _write_config(tmp_path / "dpo.yaml", step1x, reward, tmp_path / "dpo", 1)
    cfg = yaml.safe_load(path.read_text())
    cfg["train"] = {"learning_rate": 1e-2, "beta": 500.0, "reference": "fixed", "timesteps_per_pair": 1,
                    "micro_batch": 2}
    path.write_text(yaml.safe_dump(cfg))
    assert main(["policy", "dpo", "--config", str(path)]) == 0
    row = _rows(tmp_path / "dpo")[1]
    assert row["dpo/pairs"] == 2 and row["dpo/loss"] == pytest.approx(math.log(2), abs=1e-6)  # B = 0: no margin yet
    lora = load_file(str(tmp_path / "dpo" / "checkpoints" / "step_000001" / "lora.safetensors"))
    assert any("lora_B" in n and w.abs().sum() > 0 for n, w in lora.items())


def test_the_gpu_preset_runs_its_clipped_recipe_on_the_tiny_checkpoint(assets, tmp_path):
    """configs/policy/step1x-edit-grpo.yaml as shipped, but for the tiny checkpoint, editworld prompts and 4 edits."""
    from safetensors.torch import load_file

    from editrl.cli import main
    from editrl.config import load_config
    from policy.config import GRPOConfig

    preset = ROOT / "configs" / "policy" / "step1x-edit-grpo.yaml"
    cfg = load_config(GRPOConfig, preset)
    assert cfg.editor.spec.startswith("step1x-edit:/") and cfg.sampling.num_steps == 28
    assert cfg.sampling.guidance == 6.0 and cfg.editor.load_kwargs["size_level"] == 512
    assert cfg.train.policy_loss == "clipped" and cfg.sampling.sde_window == 4

    step1x, reward = assets
    out = tmp_path / "run"
    assert main(["policy", "grpo", "--config", str(preset), f"out={out}", "steps=1",
                 f"editor.spec=step1x-edit:{step1x}", "editor.load_kwargs={dtype: float32}", "editor.lora_rank=2", "editor.lora_alpha=4",
                 f"reward.client={reward}", "data.kind=editworld", "data.manifest=null", "data.num_tasks=4",
                 "data.prompts_per_step=2", "sampling.group_size=2", "sampling.num_steps=4"]) == 0
    row = _rows(out)[1]
    assert math.isfinite(row["train/loss"]) and row["train/kl"] >= 0 and row["train/optimizer_steps"] == 1.0
    lora = load_file(str(out / "checkpoints" / "step_000001" / "lora.safetensors"))
    assert lora and all(n.startswith("dit.") for n in lora)  # the preset adapts the DiT only
    assert any("lora_B" in n and w.abs().sum() > 0 for n, w in lora.items())
