"""Miniature Table 3: the noisy set, subsets, statistics; and a tiny end-to-end run when SFT is available."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from curation.table3 import (Table3Config, bootstrap_ci, flaw_share, random_subset, summarise,
                             write_noisy_dataset)
from editrl.dimensions import DIMENSIONS
from editrl.io import read_jsonl
from editworld.oracle import oracle_scores
from editworld.tasks import Task


def test_noisy_dataset_has_the_requested_share_of_flawed_targets(tmp_path):
    manifest = write_noisy_dataset(tmp_path / "d", 120, 0.45, seed=4, progress=False)
    rows = read_jsonl(manifest)
    assert len(rows) == 120 and len({r["id"] for r in rows}) == 120
    share = flaw_share(manifest)["flawed_share"]
    assert 0.3 < share < 0.6
    clean_oracle, flawed_oracle = [], []
    for r in rows:
        task = Task.from_dict(r["task"])
        target = np.asarray(Image.open(tmp_path / "d" / r["target"]).convert("RGB"))
        if r["flawed"]:
            assert min(r["true_scores"].values()) < 4 and r["editor"] is not None
            flawed_oracle.append(np.mean(list(oracle_scores(task, target).values())))
        else:
            assert r["true_scores"] == {"instruction_following": 4, "visual_quality": 4}
            if r["editor"] is None:  # a clean target is exactly the re-rendered edit
                assert (target == task.target_array(32)).all()
            clean_oracle.append(np.mean(list(oracle_scores(task, target).values())))
    assert np.mean(clean_oracle) > np.mean(flawed_oracle) + 0.8
    again = write_noisy_dataset(tmp_path / "d2", 120, 0.45, seed=4, progress=False)
    assert again.read_text() == manifest.read_text(), "the noisy set is not deterministic"


def test_random_subset_is_seeded_and_paths_resolve(tmp_path):
    manifest = write_noisy_dataset(tmp_path / "d", 30, 0.5, seed=1, progress=False)
    a = read_jsonl(random_subset(manifest, 10, 7, tmp_path / "r1" / "m.jsonl"))
    b = read_jsonl(random_subset(manifest, 10, 7, tmp_path / "r2" / "m.jsonl"))
    c = read_jsonl(random_subset(manifest, 10, 8, tmp_path / "r3" / "m.jsonl"))
    assert [r["id"] for r in a] == [r["id"] for r in b] != [r["id"] for r in c]
    assert len({r["id"] for r in a}) == 10
    assert all((tmp_path / "r1" / r["source"]).is_file() and (tmp_path / "r1" / r["target"]).is_file() for r in a)


def test_summary_means_cis_and_paired_differences():
    scores = {"full": {"visual_quality": [2.0, 3.0, 4.0, 3.0]},
              "curated": {"visual_quality": [3.0, 3.0, 4.0, 4.0]}}
    s = summarise(scores, n_boot=500, seed=0)
    assert s["arms"]["full"]["visual_quality"]["mean"] == 3.0
    assert s["arms"]["curated"]["visual_quality"]["mean"] == 3.5
    diff = s["differences"]["curated-full"]["visual_quality"]
    assert diff["mean"] == pytest.approx(0.5)  # per-task differences 1, 0, 0, 1
    lo, hi = diff["ci95"]
    assert 0.0 <= lo <= 0.5 <= hi <= 1.0
    lo, hi = bootstrap_ci(np.array([1.0, 1.0, 1.0]), 100, 0)
    assert lo == hi == 1.0


def test_budget_minutes_scales_steps():
    assert Table3Config().with_budget_minutes(5).sft_steps > Table3Config().with_budget_minutes(1).sft_steps >= 10


HAVE_SFT = importlib.util.find_spec("policy.sft") is not None and importlib.util.find_spec("rollout.tiny_editor") is not None


@pytest.mark.slow  # three `editrl policy sft` child processes (torch + diffusers imports each)
@pytest.mark.skipif(not HAVE_SFT, reason="policy.sft / rollout.tiny_editor not available yet")
def test_tiny_table3_end_to_end(tmp_path):
    from curation.table3 import print_table, run_table3
    from reward.model.config import RewardModelConfig
    from reward.model.editreward import build_reward_model
    from reward.serve.scorer import RewardScorer

    model, processor = build_reward_model(RewardModelConfig())
    client = RewardScorer(model, processor, RewardModelConfig(), batch_size=32)
    cfg = Table3Config(out=str(tmp_path / "t3"), n_train=48, sft_steps=3, sft_batch_size=8, n_eval=12,
                       eval_steps=2, eval_batch_size=12, bootstrap=100, progress=False)
    result = run_table3(cfg, client=client)
    assert set(result["arms"]) == {"full", "curated", "random"}
    assert result["data"]["curated"]["rows"] == result["data"]["random"]["rows"] == 24
    for arm in result["arms"].values():
        for d in DIMENSIONS:
            assert 1.0 <= arm[d]["mean"] <= 4.0 and arm[d]["ci95"][0] <= arm[d]["mean"] <= arm[d]["ci95"][1]
    assert json.loads((tmp_path / "t3" / "table3.json").read_text())["curation"]["kept"] == 24
    assert (tmp_path / "t3" / "table3.png").stat().st_size > 0
    for arm in ("full", "curated", "random"):  # every arm trained with the same budget from the same init
        assert (tmp_path / "t3" / f"sft-{arm}" / "editor").is_dir()
    print_table(result)


def test_sft_command_is_identical_across_arms_but_for_data_and_out(tmp_path):
    from curation.table3 import sft_command

    cfg = Table3Config(sft_steps=77, sft_batch_size=9, seed=3)
    a = sft_command(tmp_path / "a.jsonl", tmp_path / "A", cfg)
    b = sft_command(tmp_path / "b.jsonl", tmp_path / "B", cfg)
    differ = [(x, y) for x, y in zip(a, b) if x != y]
    assert len(a) == len(b) and len(differ) == 3  # data.source, out, save_to
    assert "train.max_steps=77" in a and "train.batch_size=9" in a and "seed=3" in a and "editor.spec=new-tiny" in a
