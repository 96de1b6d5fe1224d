"""The demo runs its stages through the public functions and writes one self-contained report."""

import json

import pytest

from editrl.cli import main

STAGE_HEADINGS = {"world": "1. The editworld", "reward": "2. The reward model", "curate": "3. Curation",
                  "best-of-n": "4. Best-of-N", "grpo": "5. GRPO"}


@pytest.fixture(scope="module")
def random_reward(tmp_path_factory):
    from reward.model.config import RewardModelConfig
    from reward.model.editreward import build_reward_model, save_checkpoint

    cfg = RewardModelConfig()
    model, processor = build_reward_model(cfg)
    return save_checkpoint(model, processor, cfg, tmp_path_factory.mktemp("reward") / "ckpt")


def test_quick_demo_runs_every_stage_with_a_random_reward_checkpoint(tmp_path, random_reward):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--reward", str(random_reward)]) == 0
    html = (out / "report.html").read_text()
    assert "oracle vs true Spearman" in html and "pixel-difference heuristic" in html
    for stage, heading in STAGE_HEADINGS.items():
        assert heading in html, stage
        assert f"{stage} stage wall time" in html, stage
    assert "the checkpoint given with --reward" in html and "QUICK MODE" in html
    assert "data:image/png;base64," in html  # figures are embedded
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) >= set(STAGE_HEADINGS) | {"total"}
    for stage in ("curate", "best-of-n", "grpo"):
        assert (out / stage).is_dir()
    assert (out / "curate" / "histograms.png").is_file() and (out / "best-of-n" / "sweep.png").is_file()
    assert (out / "grpo" / "curves.png").is_file()


def test_demo_trains_a_reward_briefly_when_none_is_shipped_and_says_so(tmp_path, monkeypatch):
    import editrl.demo as demo

    monkeypatch.setattr(demo, "SHIPPED_REWARD", tmp_path / "no-shipped-reward")
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--skip", "curate,best-of-n,grpo"]) == 0
    html = (out / "report.html").read_text()
    assert "trained BRIEFLY BY THIS DEMO" in html and "NOT the shipped model" in html
    assert "3. Curation" not in html and "5. GRPO" not in html
    assert set(json.loads((out / "timings.json").read_text())) == {"world", "reward", "total"}
    assert (out / "reward-train" / "final").is_dir()


def test_demo_rejects_an_unknown_stage(tmp_path):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--skip", "nonsense"]) == 2
