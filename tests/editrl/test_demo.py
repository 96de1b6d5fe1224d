"""The demo runs its stages through the public functions and writes one self-contained report."""

import json

from editrl.cli import main


def test_demo_with_a_random_reward_checkpoint(tmp_path):
    from reward.config import RewardModelConfig
    from reward.model import build_reward_model, save_checkpoint

    cfg = RewardModelConfig()
    model, processor = build_reward_model(cfg)
    ckpt = save_checkpoint(model, processor, cfg, tmp_path / "ckpt")
    assert main(["demo", "--out", str(tmp_path / "demo"), "--groups", "12", "--reward", str(ckpt)]) == 0
    html = (tmp_path / "demo" / "report.html").read_text()
    assert "oracle vs true Spearman" in html and "pixel-difference heuristic" in html
    assert set(json.loads((tmp_path / "demo" / "timings.json").read_text())) >= {"world", "reward"}
