"""`editrl curate` end to end: a real editworld dataset, a real reward checkpoint loaded from disk.

The checkpoint is a tiny reward model saved by ``reward.model.editreward.save_checkpoint`` (random weights unless the
shipped ``reward/weights/editworld-tiny`` exists, in which case a second test checks that curating with it
removes flawed edits).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from editrl.cli import main
from editrl.io import read_jsonl

SHIPPED = Path(__file__).resolve().parents[2] / "reward" / "weights" / "editworld-tiny"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    assert main(["world", "generate", "--out", str(root), "--groups", "6", "--seed", "3"]) == 0
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from reward.model.config import RewardModelConfig
    from reward.model.editreward import build_reward_model, save_checkpoint

    torch.manual_seed(0)
    cfg = RewardModelConfig()
    model, processor = build_reward_model(cfg)
    return save_checkpoint(model, processor, cfg, tmp_path_factory.mktemp("ckpt") / "reward")


def test_curate_cli_scores_selects_and_resumes(world, checkpoint, tmp_path, capsys):
    out = tmp_path / "cur"
    n_rows = len(read_jsonl(world / "manifest.jsonl"))
    args = ["curate", "--input", str(world / "manifest.jsonl"), "--reward", str(checkpoint), "--out", str(out),
            "--top-k", "10", "--uncertainty-k", "0.5", "--batch-size", "16", "--no-progress"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["total"], summary["scored"], summary["rejected"], summary["kept"]) == (n_rows, n_rows, 0, 10)
    assert summary["selection"]["uncertainty_k"] == 0.5
    every = read_jsonl(out / "all_scored.jsonl")
    kept = read_jsonl(out / "kept.jsonl")
    keys = sorted((r["reward"]["rank_key"] for r in every), reverse=True)
    assert sorted(r["reward"]["rank_key"] for r in kept) == sorted(keys[:10])
    for r in kept:  # rank key is score - 0.5 sigma, and the row keeps its editworld fields
        assert r["reward"]["rank_key"] == pytest.approx(r["reward"]["score"] - 0.5 * r["reward"]["score_sigma"])
        assert {"group_id", "task", "true_scores", "edited"} <= set(r)
        assert (out / r["edited"]).is_file()
    assert len({r["reward"]["score"] for r in every}) > n_rows // 2, "the model gives (nearly) constant scores"
    assert "kept 10" in capsys.readouterr().out

    # re-running with a different rule re-selects from the stored scores without scoring anything again
    before = (out / "scores.jsonl").read_bytes()
    assert main(args[:7] + ["--top-fraction", "0.5", "--min-dim", "visual_quality=-100", "--no-progress"]) == 0
    assert (out / "scores.jsonl").read_bytes() == before
    summary = json.loads((out / "summary.json").read_text())
    assert summary["last_call"]["already_done"] == n_rows and summary["last_call"]["scored_now"] == 0
    assert summary["kept"] == round(n_rows / 2)


def test_curate_cli_bad_input_is_a_clear_error(checkpoint, tmp_path, capsys):
    assert main(["curate", "--input", str(tmp_path / "missing"), "--reward", str(checkpoint),
                 "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "no manifest.jsonl" in capsys.readouterr().err
    assert main(["curate", "--input", str(tmp_path), "--min-dim", "visual_quality", "--out", str(tmp_path / "o")]) == 2
    assert "expected DIMENSION=VALUE" in capsys.readouterr().err


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").exists() and not any(SHIPPED.glob("*.safetensors")),
                    reason="shipped tiny reward checkpoint not present")
def test_shipped_reward_keeps_fewer_flawed_edits(world, tmp_path):
    out = tmp_path / "shipped"
    assert main(["curate", "--input", str(world / "manifest.jsonl"), "--reward", str(SHIPPED), "--out", str(out),
                 "--top-fraction", "0.3", "--no-progress"]) == 0
    every = read_jsonl(out / "all_scored.jsonl")
    kept = [r for r in every if r["kept"]]

    def true_mean(rows):
        return sum(sum(r["true_scores"].values()) / 2 for r in rows) / len(rows)

    assert true_mean(kept) > true_mean(every) + 0.3
