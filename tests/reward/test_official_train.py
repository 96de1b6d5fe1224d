"""Fine-tuning the released model: the mean-log-sigma pooling equals the official one, the official Monte Carlo
loss is reproduced on its own noise, and `editrl reward train` continues an imported model in official mode."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from official_golden import BASES, GOLDEN, IMAGES, checkpoint_dir  # noqa: E402

LOSS = GOLDEN["loss"]


def _heads(side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, log_sigma), each (B, 2), of the winners ("A") or losers ("B") as the official heads gave them."""
    per = torch.tensor([LOSS["per_head_inputs"][f"{side}_head0"], LOSS["per_head_inputs"][f"{side}_head1"]])
    return per[..., 0].T, per[..., 1].T


def test_mean_log_sigma_is_the_official_fused_gaussian():
    from reward.train.loss import aggregate

    for side in ("A", "B"):
        mu, log_sigma = _heads(side)
        fused_mu, fused_sigma = aggregate(mu, log_sigma, "mean_log_sigma")
        official = torch.tensor(LOSS[f"rewards_{side}_fused"])
        assert torch.allclose(fused_mu, official[:, 0], atol=1e-7)
        assert torch.allclose(fused_sigma.log(), official[:, 1], atol=1e-6)


def test_official_mc_loss_is_reproduced_on_its_noise():
    from reward.train.loss import ranking_loss

    mu_w, ls_w = _heads("A")
    mu_l, ls_l = _heads("B")
    noise = torch.tensor(LOSS["noise_float32"])
    loss = ranking_loss(mu_w, ls_w, mu_l, ls_l, aggregation="mean_log_sigma", estimator="mc", noise=noise)
    assert abs(float(loss) - LOSS["official_loss"]) < 1e-6
    editrl_pooling = ranking_loss(mu_w, ls_w, mu_l, ls_l, aggregation="mean", estimator="mc", noise=noise)
    assert abs(float(editrl_pooling) - LOSS["official_loss"]) > 1e-2  # the pooling matters: sqrt(sum var)/D differs
    with pytest.raises(ValueError, match="noise has shape"):
        ranking_loss(mu_w, ls_w, mu_l, ls_l, estimator="mc", noise=noise[:, :10])


def test_reward_train_continues_an_imported_model_in_official_mode(tmp_path):
    from editrl.cli import main
    from reward.model.editreward import load_checkpoint
    from reward.official.importer import import_official
    from reward.serve.scorer import RewardScorer

    start = tmp_path / "imported"
    import_official(checkpoint_dir("a"), BASES["qwen25vl"], start)
    rows = []
    for src, cands in (("A_src.png", ["A_cand1.png", "A_cand2.png", "A_cand3.png"]),
                       ("B_src.png", ["B_cand1.png", "B_cand2.png", "B_cand3.png"])):
        for win, lose in zip(cands, cands[1:]):
            rows.append({"source": str(IMAGES / src), "instruction": "make it better", "preferred": str(IMAGES / win),
                         "rejected": str(IMAGES / lose), "group_id": src,
                         "preferred_scores": {"instruction_following": 4, "visual_quality": 3},
                         "rejected_scores": {"instruction_following": 2, "visual_quality": 2}})
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    assert main(["reward", "train", "--config", str(start / "finetune.yaml"), f"data.train={pairs}",
                 "data.val_fraction=0", "train.max_steps=2", "train.batch_size=2", "train.lr=1e-3",
                 "train.warmup_ratio=0", "train.schedule=constant_with_warmup", f"out_dir={out}", "--no-progress"]) == 0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(m["train/loss"])) for m in metrics if "train/loss" in m)
    before, _, _ = load_checkpoint(start)
    after, _, cfg = load_checkpoint(out / "final")
    assert cfg.inference == "official" and cfg.aggregation == "mean_log_sigma"
    moved = [k for k, v in before.state_dict().items() if not torch.equal(v, after.state_dict()[k])]
    assert any(k.startswith("heads.") for k in moved) and any(k.startswith("backbone.language_model") for k in moved)
    scored = RewardScorer.from_checkpoint(out / "final").score_group(IMAGES / "A_src.png", "make it better",
                                                                     [IMAGES / "A_cand1.png"])
    assert scored[0].error is None and torch.isfinite(torch.tensor(scored[0].score))

