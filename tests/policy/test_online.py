"""The online loop on a tiny FLUX.1-Kontext checkpoint and a tiny random reward checkpoint, through the real CLI.

GRPO: two iterations, finite losses, LoRA changes while base weights do not, checkpoints written, and a run
resumed from its step-1 checkpoint reproduces the uninterrupted run's step-2 metrics. DPO: a step with an
online (snapshot) reference. Plus the small pieces: pairs, stat tracker, failed rewards, snapshots.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rollout"))

from tiny_pipelines import write_tiny_kontext, write_tiny_reward  # noqa: E402


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("online")
    kontext = write_tiny_kontext(root / "kontext")
    reward = write_tiny_reward(root / "reward", seed=0)
    return root, kontext, reward


def _write_config(path: Path, kontext: Path, reward: Path, out: Path, steps: int, clipped: dict | None = None,
                  **train) -> Path:
    """A tiny GRPO config; Flow-GRPO's clipped loss unless ``train`` names another ``policy_loss``."""
    import yaml

    cfg = {
        "out": str(out), "seed": 3, "steps": steps, "checkpoint_every": 1, "keep_checkpoints": 5,
        "editor": {"spec": f"flux-kontext:{kontext}", "load_kwargs": {"dtype": "float32", "max_sequence_length": 16},
                   "lora_rank": 4, "lora_alpha": 8},
        "reward": {"client": str(reward), "function": "editreward"},
        "data": {"num_tasks": 6, "prompts_per_step": 2, "image_size": 32},
        "sampling": {"group_size": 3, "num_steps": 3, "noise_level": 0.8, "prompts_per_chunk": 1},
        "train": {"learning_rate": 1e-2, "micro_batch": 3, "grad_accum": 2, "policy_loss": "clipped",
                  "clipped": {"clip_range": 0.2, "beta": 0.01, "timestep_fraction": 0.67, **(clipped or {})}, **train},
        "eval": {"every": 2, "num_tasks": 3, "num_steps": 2, "batch_size": 3},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def _rows(out: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: {k: v for k, v in r.items() if not k.startswith("time")} for r in rows}


def test_grpo_cli_trains_lora_only_checkpoints_and_resumes_exactly(assets, tmp_path):
    from editrl.cli import main
    from safetensors.torch import load_file

    _, kontext, reward = assets
    full, part = tmp_path / "full", tmp_path / "part"
    cfg_full = _write_config(tmp_path / "full.yaml", kontext, reward, full, steps=2)
    assert main(["policy", "grpo", "--config", str(cfg_full)]) == 0
    rows = _rows(full)
    assert sorted(rows) == [0, 1, 2]
    for step in (1, 2):
        r = rows[step]
        assert math.isfinite(r["train/loss"]) and math.isfinite(r["train/kl"]) and r["train/kl"] >= 0
        assert r["train/optimizer_steps"] == 1.0  # 6 samples / micro-batch 3 / grad_accum 2
        assert "reward/mu_instruction_following" in r and "reward/oracle_instruction_following" in r
        assert 0.0 <= r["zero_advantage_groups"] <= 1.0
    assert "eval/oracle_instruction_following" in rows[0] and "eval/reward" in rows[2]
    assert (full / "curves.png").stat().st_size > 0 and (full / "config.yaml").is_file()
    ckpts = sorted((full / "checkpoints").glob("step_*"))
    assert [c.name for c in ckpts] == ["step_000001", "step_000002"]
    w1, w3 = load_file(str(ckpts[0] / "lora.safetensors")), load_file(str(ckpts[1] / "lora.safetensors"))
    assert w1 and all("lora_" in n for n in w1)
    assert any(not torch.equal(w1[n], w3[n]) for n in w1)  # the adapter trains
    assert any("lora_B" in n and w3[n].abs().sum() > 0 for n in w3)  # B starts at zero

    # interrupted after step 1, then resumed to step 2: the same curve
    cfg_part = _write_config(tmp_path / "part.yaml", kontext, reward, part, steps=1)
    assert main(["policy", "grpo", "--config", str(cfg_part)]) == 0
    assert main(["policy", "grpo", "--config", str(cfg_part), "steps=2"]) == 0
    resumed = _rows(part)
    assert sorted(resumed) == [0, 1, 2]
    for step in (1, 2):
        for key, value in rows[step].items():
            if isinstance(value, float):
                assert resumed[step][key] == pytest.approx(value, rel=1e-5, abs=1e-7), (step, key)
    w_resumed = load_file(str(part / "checkpoints" / "step_000002" / "lora.safetensors"))
    for n in w3:
        torch.testing.assert_close(w_resumed[n], w3[n], rtol=1e-5, atol=1e-7)

    # a torn newest checkpoint (no state file; a truncated weights file) is skipped with a warning naming it, and
    # the run resumes from the previous complete one and lands on the same curve
    newest = part / "checkpoints" / "step_000002"
    for tear in ("partial", "truncated"):
        if tear == "partial":
            (newest / "state.json").unlink()
        else:
            weights = newest / "lora.safetensors"
            weights.write_bytes(weights.read_bytes()[:100])
        with pytest.warns(UserWarning, match="step_000002"):
            assert main(["policy", "grpo", "--config", str(cfg_part), "steps=2"]) == 0
        again = _rows(part)
        assert again[2]["train/loss"] == pytest.approx(rows[2]["train/loss"], rel=1e-5), tear
        w_again = load_file(str(newest / "lora.safetensors"))
        for n in w3:
            torch.testing.assert_close(w_again[n], w3[n], rtol=1e-5, atol=1e-7)
    manifest = json.loads((newest / "adapter.json").read_text())
    assert manifest["editor"] == f"flux-kontext:{kontext}" and manifest["lora_rank"] == 4
    assert manifest["algorithm"] == "grpo/clipped" and sorted(manifest["param_names"]) == sorted(w3)


def test_grpo_leaves_base_weights_untouched(assets, tmp_path):
    from safetensors.torch import load_file

    from editrl.config import load_config
    from policy.config import GRPOConfig
    from policy.grpo import train_grpo

    _, kontext, reward = assets
    path = _write_config(tmp_path / "c.yaml", kontext, reward, tmp_path / "run", steps=1, clipped={"beta": 0.0})
    result = train_grpo(load_config(GRPOConfig, path, ["eval.num_tasks=0", "reward.log_oracle=false"]))
    base = load_file(str(next((kontext / "transformer").glob("*.safetensors"))))
    named = dict(result["editor"].transformer.named_parameters())
    compared = 0
    for name, p in named.items():
        if "lora_" in name:
            continue
        key = name.replace(".base_layer", "")
        torch.testing.assert_close(p.detach(), base[key], rtol=0, atol=0)
        compared += 1
    assert compared == len(base)
    assert math.isfinite(result["last"]["train/loss"]) and result["last"]["train/kl"] == 0.0

    # the trained policy loads back through the editor registry (run folder, bare or "rl:"; or one checkpoint)
    from editrl.io import DataError
    from rollout.registry import load_editor

    trained = {n: p for n, p in named.items() if "lora_" in n}
    for spec in (f"rl:{tmp_path / 'run'}", str(tmp_path / "run"), str(tmp_path / "run" / "checkpoints" / "step_000001")):
        loaded = dict(load_editor(spec).transformer.named_parameters())
        assert all(torch.equal(loaded[n].detach(), p.detach()) for n, p in trained.items())
    with pytest.raises(DataError, match="not an RL run"):
        load_editor(f"rl:{tmp_path}")

    # margins --tasks: the final policy and its starting editor (adapter off) re-evaluated on the same tasks
    from editrl.cli import main
    from editworld.tasks import HELD_OUT_SEED, sample_tasks
    from rollout.held_out import edit_tasks, mean_scores, oracle_scores_of

    out = tmp_path / "re.json"
    assert main(["policy", "margins", str(tmp_path / "run"), "--tasks", "3", "--eval-steps", "2",
                 "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    run_rec = rec["runs"][str(tmp_path / "run")]
    tasks = sample_tasks(3, HELD_OUT_SEED, size=32)
    base = load_editor(f"flux-kontext:{kontext}", dtype="float32", max_sequence_length=16)
    assert run_rec["before"] == pytest.approx(mean_scores(oracle_scores_of(tasks, edit_tasks(base, tasks, 2, 64, 0, 32))), abs=1e-6)
    gain = rec["margins"]["oracle_instruction_following"]
    assert gain["gains"] == pytest.approx([run_rec["after"]["instruction_following"]
                                          - run_rec["before"]["instruction_following"]])
    both = rec["margins"]["oracle_mean"]["gains"]
    assert both == pytest.approx([sum(run_rec["after"][d] - run_rec["before"][d] for d in run_rec["after"]) / 2])


def test_dpo_step_with_an_online_reference(assets, tmp_path):
    from editrl.cli import main
    from safetensors.torch import load_file

    _, kontext, reward = assets
    path = _write_config(tmp_path / "dpo.yaml", kontext, reward, tmp_path / "dpo", steps=2)
    cfg = json.loads(json.dumps(__import__("yaml").safe_load(path.read_text())))
    cfg["train"] = {"learning_rate": 1e-2, "beta": 500.0, "reference": "online", "refresh_every": 1,
                    "timesteps_per_pair": 2, "micro_batch": 2}
    path.write_text(__import__("yaml").safe_dump(cfg))
    assert main(["policy", "dpo", "--config", str(path)]) == 0
    rows = _rows(tmp_path / "dpo")
    assert rows[1]["dpo/pairs"] == 2 and rows[1]["dpo/reward_gap"] > 0
    # step 1: the policy is its own reference (B = 0 and snapshot = start), so the loss is exactly log 2
    assert rows[1]["dpo/loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert math.isfinite(rows[2]["dpo/loss"])
    ckpt = tmp_path / "dpo" / "checkpoints" / "step_000002"
    lora, ref = load_file(str(ckpt / "lora.safetensors")), load_file(str(ckpt / "extra.safetensors"))
    assert sorted(ref) == sorted(f"ref.{n}" for n in lora)
    for n in lora:  # refreshed after the last step: the snapshot equals the weights
        torch.testing.assert_close(ref[f"ref.{n}"], lora[n])
    assert any("lora_B" in n and lora[n].abs().sum() > 0 for n in lora)


def test_grpo_with_the_group_dpo_loss(assets, tmp_path):
    """train.policy_loss=group_dpo: the GRPO loop's advantages train through policy.losses.group_dpo_loss."""
    from editrl.cli import main
    from safetensors.torch import load_file

    _, kontext, reward = assets
    path = _write_config(tmp_path / "dgpo.yaml", kontext, reward, tmp_path / "dgpo", steps=2,
                         policy_loss="group_dpo", group_dpo={"beta": 500.0, "timesteps_per_group": 2})
    cfg = __import__("yaml").safe_load(path.read_text())
    del cfg["train"]["clipped"]  # a setting the chosen loss ignores is an error (tested in test_config_validation)
    path.write_text(__import__("yaml").safe_dump(cfg))
    assert main(["policy", "grpo", "--config", str(path)]) == 0
    rows = _rows(tmp_path / "dgpo")
    # step 1: LoRA B = 0, the policy is its reference: every group's loss is exactly log 2
    assert rows[1]["train/loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert rows[1]["train/trained_groups"] == 2 and rows[1]["train/optimizer_steps"] == 1.0  # 2 groups, accum 2
    assert math.isfinite(rows[2]["train/loss"]) and rows[2]["train/loss"] != pytest.approx(math.log(2), abs=1e-6)
    lora = load_file(str(tmp_path / "dgpo" / "checkpoints" / "step_000002" / "lora.safetensors"))
    assert any("lora_B" in n and lora[n].abs().sum() > 0 for n in lora)


def test_grpo_with_the_nft_loss_on_ode_samples(assets, tmp_path):
    """train.policy_loss=nft on ODE edits (noise_level 0): the advantages train through policy.losses.nft_loss
    against a snapshot of the sampling weights (the second optimiser step of a step sees a drift from it), with the
    KL term to the adapter-disabled reference; the run resumes onto the same curve."""
    from editrl.cli import main
    from safetensors.torch import load_file

    _, kontext, reward = assets

    def config(out: Path, steps: int) -> Path:
        path = _write_config(tmp_path / f"{out.name}.yaml", kontext, reward, out, steps=steps, policy_loss="nft",
                             grad_accum=1, nft={"beta": 1.0, "timesteps_per_sample": 2, "kl_beta": 0.1})
        cfg = __import__("yaml").safe_load(path.read_text())
        del cfg["train"]["clipped"]
        cfg["sampling"]["noise_level"] = 0.0
        path.write_text(__import__("yaml").safe_dump(cfg))
        return path

    full, part = tmp_path / "nft", tmp_path / "nft-part"
    assert main(["policy", "grpo", "--config", str(config(full, 2))]) == 0
    rows = _rows(full)
    assert rows[1]["train/optimizer_steps"] == 2.0  # 6 edits, micro-batch 3, no accumulation
    assert rows[1]["train/drift"] > 0  # the second micro-batch: weights moved, the snapshot did not
    assert rows[1]["train/kl"] > 0 and math.isfinite(rows[2]["train/loss"])
    assert rows[1]["train/optimality_mean"] == pytest.approx(0.5, abs=1e-6)  # z-scores: mean 0 -> r mean 1/2
    lora = load_file(str(full / "checkpoints" / "step_000002" / "lora.safetensors"))
    assert any("lora_B" in n and lora[n].abs().sum() > 0 for n in lora)
    assert main(["policy", "grpo", "--config", str(config(part, 1))]) == 0
    assert main(["policy", "grpo", "--config", str(config(part, 2))]) == 0
    for key, value in rows[2].items():
        if isinstance(value, float) and not key.startswith("time/"):
            assert _rows(part)[2][key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


def test_best_worst_pairs_and_snapshot_swap():
    from policy.updates import LoraSnapshot, best_worst_pairs

    rewards = torch.tensor([0.1, 0.9, 0.5, 2.0, 2.0, 1.0, 1.0])
    keys = ["a", "a", "a", "b", "b", "c", "c"]
    pairs = best_worst_pairs(rewards, keys)
    assert pairs == [(1, 0)]  # b is tied, c is tied
    assert best_worst_pairs(rewards, keys, min_gap=0.9) == []
    # k = 2 of a group of 5 whose rewards are 2, 0, 4, 1, 3 (rows 0-4): (4 vs 0), (3 vs 1); the middle is unused
    five = torch.tensor([2.0, 0.0, 4.0, 1.0, 3.0])
    assert best_worst_pairs(five, ["g"] * 5, per_group=2) == [(2, 1), (4, 3)]
    assert best_worst_pairs(five, ["g"] * 5, per_group=9) == [(2, 1), (4, 3)]  # never more than half the group
    assert best_worst_pairs(five, ["g"] * 5, min_gap=2.5, per_group=2) == [(2, 1)]  # 3 - 1 is not above the gap
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    snap = LoraSnapshot([("w", p)])
    with torch.no_grad():
        p.add_(1.0)
    with snap.swapped_in():
        assert p.tolist() == [1.0, 2.0]
    assert p.tolist() == [2.0, 3.0]


def test_stat_tracker_fill_and_zero_advantage_by_hand():
    from policy.advantages import PromptStatTracker, zero_advantage_fraction
    from policy.rollouts import fill_failed_rewards

    tracker = PromptStatTracker(history=3)
    adv = tracker.advantages(np.array([1.0, 3.0, 5.0]), ["a", "a", "b"], eps=0.0)
    np.testing.assert_allclose(adv[:2], [-1.0, 1.0])  # mean 2, std 1
    assert adv[2] == 0.0  # single value: std 0, reward - mean = 0
    adv = tracker.advantages(np.array([5.0, 7.0]), ["a", "a"], eps=0.0)  # history [3, 5, 7] (kept 3)
    np.testing.assert_allclose(adv, [0.0, 2.0 / math.sqrt(8 / 3)])
    state = json.loads(json.dumps(tracker.state_dict()))
    other = PromptStatTracker()
    other.load_state_dict(state)
    assert other.stats == tracker.stats and other.history == 3

    r, n = fill_failed_rewards(torch.tensor([1.0, float("nan"), 3.0, float("nan")]), ["a", "a", "a", "b"])
    assert n == 2 and r.tolist() == [1.0, 2.0, 3.0, 0.0]
    assert zero_advantage_fraction(torch.tensor([1.0, 1.0, 2.0, 3.0]), ["a", "a", "b", "b"]) == 0.5


def test_sde_window_draws_consecutive_steps_from_the_first_half():
    from policy.config import SamplingSection
    from policy.rollouts import sde_window_steps

    g = torch.Generator().manual_seed(0)
    assert sde_window_steps(SamplingSection(num_steps=8, sde_window=0), g) is None  # every step is SDE
    starts = set()
    for _ in range(50):  # T = 8, k = 2: the window starts at 0..3 (the first half), never later
        steps = sde_window_steps(SamplingSection(num_steps=8, sde_window=2), g)
        assert steps == [steps[0], steps[0] + 1]
        starts.add(steps[0])
    assert starts == {0, 1, 2, 3}
    assert sde_window_steps(SamplingSection(num_steps=3, sde_window=3), g) == [0, 1, 2]
    with pytest.raises(ValueError, match="sde_window"):
        sde_window_steps(SamplingSection(num_steps=3, sde_window=4), g)


def test_sde_window_samples_log_probs_only_on_its_steps_and_grpo_trains_there(assets, tmp_path):
    from PIL import Image

    from editrl.config import load_config
    from policy.config import GRPOConfig, SamplingSection
    from policy.grpo import train_grpo
    from policy.rollouts import Prompt, sample_groups
    from rollout.registry import load_editor

    _, kontext, reward = assets
    editor = load_editor(f"flux-kontext:{kontext}", dtype="float32", max_sequence_length=16)
    prompts = [Prompt(Image.new("RGB", (32, 32), (200, 30, 30)), "make it blue", key="p0")]
    sampling = SamplingSection(group_size=2, num_steps=4, noise_level=0.8, sde_window=2)
    rollout, _ = sample_groups(editor, lambda ims, ins, meta: (torch.ones(len(ims)), {}), prompts, sampling,
                               torch.Generator().manual_seed(0), with_oracle=False)
    window = rollout.sde_steps
    assert len(window) == 2 and window[0] in (0, 1)
    others = [t for t in range(4) if t not in window]
    assert (rollout.log_probs[:, others] == 0).all() and (rollout.log_probs[:, window] != 0).all()

    path = _write_config(tmp_path / "c.yaml", kontext, reward, tmp_path / "run", steps=1, clipped={"timestep_fraction": 1.0})
    cfg = load_config(GRPOConfig, path, ["eval.num_tasks=0", "reward.log_oracle=false", "sampling.sde_window=1"])
    last = train_grpo(cfg)["last"]
    assert math.isfinite(last["train/loss"]) and last["train/approx_kl"] >= 0


@pytest.mark.parametrize("spec", ["editworld-tiny", "kontext"])
def test_shared_initial_noise_makes_a_group_differ_only_from_its_sde_window_on(assets, spec):
    """``shared_initial_noise``: the G edits of a prompt start from one draw; before the window they are the same
    ODE path, at and after it they differ; two prompts' draws differ."""
    from PIL import Image

    from policy.config import SamplingSection
    from policy.rollouts import Prompt, sample_groups
    from rollout.registry import load_editor

    _, kontext, _ = assets
    editor = (load_editor("editworld-tiny") if spec == "editworld-tiny"
              else load_editor(f"flux-kontext:{kontext}", dtype="float32", max_sequence_length=16))
    prompts = [Prompt(Image.new("RGB", (32, 32), c), "make it blue", key=f"p{i}")
               for i, c in enumerate([(200, 30, 30), (30, 200, 30)])]
    g = torch.Generator().manual_seed(3)
    sampling = SamplingSection(group_size=3, num_steps=4, noise_level=0.8, sde_window=1, shared_initial_noise=True)
    while True:  # a draw whose window does not start at step 0, so that one shared ODE step precedes it
        rollout, _ = sample_groups(editor, lambda ims, ins, meta: (torch.ones(len(ims)), {}), prompts, sampling,
                                   g, with_oracle=False)
        if rollout.sde_steps[0] > 0:
            break
    start = rollout.sde_steps[0]
    lat = rollout.latents  # (N, T+1, ...): rows 0-2 are prompt 0, rows 3-5 prompt 1
    for group in (slice(0, 3), slice(3, 6)):
        block = lat[group]
        same = block[:, : start + 1]  # equal up to float rounding of rows at different batch positions
        torch.testing.assert_close(same, block[:1, : start + 1].expand_as(same), rtol=0, atol=1e-5)
        assert (block[0, start + 1] - block[1, start + 1]).abs().max() > 0.1
    assert not torch.equal(lat[0, 0], lat[3, 0])


def test_guard_reward_keeps_its_best_policy_and_stops_when_it_stalls(assets, tmp_path):
    """eval.guard_reward scores the held-out edits with a second reward (eval/guard); the policy it liked best is
    saved as <out>/guard-best (loadable, the weights of that step), and eval.guard_patience = 1 stops the run at the
    first evaluation that brings no new best. The guard's state is in every checkpoint."""
    from editrl.checkpoint import CheckpointStore, read_state
    from editrl.cli import main
    from safetensors.torch import load_file

    _, kontext, reward = assets
    guard = write_tiny_reward(tmp_path / "guard", seed=1)  # another random reward, independent of the training one
    out = tmp_path / "run"
    path = _write_config(tmp_path / "g.yaml", kontext, reward, out, steps=4)
    assert main(["policy", "grpo", "--config", str(path), "eval.every=1", f"eval.guard_reward={guard}",
                 "eval.guard_patience=1", "train.learning_rate=0.05"]) == 0
    rows = _rows(out)
    guard_by_step = {s: r["eval/guard"] for s, r in rows.items() if "eval/guard" in r}
    assert sorted(guard_by_step) == sorted(rows) and all(math.isfinite(v) for v in guard_by_step.values())
    # where the run had to stop: the first step whose guard score is not above every earlier one
    expected_stop = next((s for s in range(1, 5) if guard_by_step[s] <= max(guard_by_step[t] for t in range(s))), 4)
    assert max(rows) == expected_stop
    assert (rows[expected_stop].get("guard/stopped") == 1.0) == (expected_stop < 4 or guard_by_step[4] <= max(
        guard_by_step[t] for t in range(4)))
    best = max(guard_by_step, key=lambda s: (guard_by_step[s], -s))
    kept = CheckpointStore(out / "guard-best").latest()
    assert kept is not None and read_state(kept)["step"] == best
    assert read_state(kept)["guard"] == pytest.approx(guard_by_step[best])
    last = CheckpointStore(out).latest()
    assert read_state(last)["step"] == expected_stop
    state = read_state(last)["guard"]
    assert state["best_step"] == best and state["best"] == pytest.approx(guard_by_step[best])
    if best > 0:  # the kept adapter is that step's weights (checkpoint_every 1 keeps each step's)
        same = load_file(str(out / "checkpoints" / f"step_{best:06d}" / "lora.safetensors"))
        for name, t in load_file(str(kept / "lora.safetensors")).items():
            assert torch.equal(t, same[name]), name
    # the kept policy is an editor; margins re-evaluates it on request
    assert main(["policy", "margins", str(out), "--tasks", "2", "--eval-steps", "2", "--checkpoint", "guard-best",
                 "--out", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["runs"][str(out)]["checkpoint"] == str(kept)


def test_guard_settings_are_checked():
    from editrl.config import ConfigError
    from policy.config import EvalSection, GRPOConfig, validate_rl_config

    with pytest.raises(ConfigError, match="eval.guard_patience: needs eval.guard_reward"):
        validate_rl_config(GRPOConfig(eval=EvalSection(guard_patience=2)))
    with pytest.raises(ConfigError, match="eval.guard_patience: must be >= 0"):
        validate_rl_config(GRPOConfig(eval=EvalSection(guard_patience=-1, guard_reward="x")))
    with pytest.raises(ConfigError, match="eval.guard_reward: is the training reward itself"):
        validate_rl_config(GRPOConfig(eval=EvalSection(guard_reward=GRPOConfig().reward.client)))
    with pytest.raises(ConfigError, match="eval.guard_reward: needs eval.num_tasks > 0"):
        validate_rl_config(GRPOConfig(eval=EvalSection(guard_reward="x", num_tasks=0)))


def test_a_resumed_guarded_run_keeps_the_same_guard_state(assets, tmp_path):
    """Stopped after step 2 and resumed to 4, a run ends with the guard state and guard-best of the unbroken run."""
    from editrl.checkpoint import CheckpointStore, read_state
    from editrl.cli import main

    _, kontext, reward = assets
    guard = write_tiny_reward(tmp_path / "guard", seed=1)
    ends = {}
    for name, stops in (("full", [4]), ("part", [2, 4])):
        path = _write_config(tmp_path / f"{name}.yaml", kontext, reward, tmp_path / name, steps=4)
        for steps in stops:
            assert main(["policy", "grpo", "--config", str(path), f"steps={steps}", "eval.every=1",
                         f"eval.guard_reward={guard}", "train.learning_rate=0.05"]) == 0
        last = read_state(CheckpointStore(tmp_path / name).latest())
        kept = read_state(CheckpointStore(tmp_path / name / "guard-best").latest())
        ends[name] = (last["step"], last["guard"]["best_step"], last["guard"]["since_best"], kept["step"])
        ends[name + " best"] = last["guard"]["best"]
    assert ends["full"] == ends["part"] and ends["full"][0] == 4
    assert ends["part best"] == pytest.approx(ends["full best"], rel=1e-5)
