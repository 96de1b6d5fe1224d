"""RewardScorer: batched scoring, shared-prefix groups equal to full recomputation, bad items, checkpoints, CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from editrl.cli import main
from editrl.dimensions import DIMENSIONS as DIMS
from reward.model.config import RewardModelConfig
from reward.model.editreward import build_reward_model, save_checkpoint
from reward.serve.scorer import EditInput, RewardScorer, ScoredEdit


def _image(w: int, h: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def scorer():
    torch.manual_seed(0)
    cfg = RewardModelConfig()
    model, processor = build_reward_model(cfg)
    return RewardScorer(model, processor, cfg, batch_size=4)


def _full(scorer: RewardScorer, source, instruction, edited) -> list[ScoredEdit]:
    return scorer.score([EditInput(source, instruction, e) for e in edited])


def _assert_same(a: ScoredEdit, b: ScoredEdit, atol: float = 1e-4) -> None:
    assert a.error is None and b.error is None
    for d in DIMS:
        assert abs(a.mu[d] - b.mu[d]) <= atol and abs(a.sigma[d] - b.sigma[d]) <= atol
    assert abs(a.score - b.score) <= atol and abs(a.score_sigma - b.score_sigma) <= atol


@pytest.mark.parametrize("sizes", [[(32, 32)], [(32, 32), (64, 32), (28, 84)]])
def test_shared_prefix_group_equals_full_recompute(scorer, sizes):
    source, instruction = _image(48, 32, 0), "recolour the red circle to blue"
    edited = [_image(w, h, 10 + i) for i, (w, h) in enumerate(sizes)]
    grouped = scorer.score_group(source, instruction, edited)
    full = _full(scorer, source, instruction, edited)
    assert len(grouped) == len(edited)
    for g, f in zip(grouped, full):
        _assert_same(g, f, atol=1e-4)
    if len(edited) > 1:  # the comparison is meaningful: candidates get clearly different scores
        assert max(abs(a.score - b.score) for a in full for b in full) > 1e-3


@pytest.mark.parametrize("prompt", ["short", "clip"])  # "clip": the prefix is text only (no source still)
def test_pair_clip_shared_prefix_equals_full_recompute(prompt):
    torch.manual_seed(0)
    cfg = RewardModelConfig(edited_input="pair_clip", pixel_area=1024, prompt=prompt)
    cfg.tiny.vision_patch_size = 4
    model, processor = build_reward_model(cfg)
    clip_scorer = RewardScorer(model, processor, cfg, batch_size=2)
    source, instruction = _image(32, 32, 0), "recolour the red circle to blue"
    edited = [_image(32, 32, 10), _image(32, 32, 11), source, _image(48, 32, 12)]  # last: resized source frame
    grouped = clip_scorer.score_group(source, instruction, edited)
    full = _full(clip_scorer, source, instruction, edited)
    for g, f in zip(grouped, full):
        _assert_same(g, f, atol=1e-4)
    assert max(abs(a.score - b.score) for a in full for b in full) > 1e-4


def test_groups_with_different_prefix_lengths_batched_together(scorer):
    groups = [
        (_image(32, 32, 1), "remove the green square", [_image(32, 32, 2), _image(56, 28, 3)]),
        (_image(80, 40, 4), "move the yellow star to the top left corner", [_image(32, 32, 5)] * 2 + [_image(40, 40, 6)]),
        (_image(32, 64, 7), "add a blue circle", [_image(32, 64, 8)]),
    ]
    batched = scorer.score_groups(groups)  # batch_size 4: prefixes in one batch, candidates in chunks of 4
    assert [len(r) for r in batched] == [2, 3, 1]
    for (source, instruction, edited), results in zip(groups, batched):
        for g, f in zip(results, _full(scorer, source, instruction, edited)):
            _assert_same(g, f, atol=1e-4)


def test_bad_items_are_reported_and_the_rest_scored(tmp_path, scorer):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a png")
    good_src, good_ed = _image(32, 32, 1), _image(32, 32, 2)
    items = [EditInput(good_src, "add a red star", good_ed), EditInput(good_src, "add a red star", str(broken)),
             EditInput(good_src, "  ", good_ed), EditInput(str(tmp_path / "missing.png"), "add a star", good_ed)]
    results = scorer.score(items)
    assert results[0].error is None and math.isfinite(results[0].score)
    assert "broken.png" in results[1].error and math.isnan(results[1].score)
    assert "instruction" in results[2].error and "empty" in results[2].error
    assert "missing.png" in results[3].error
    _assert_same(results[0], scorer.score(items[:1])[0], atol=1e-6)

    grouped = scorer.score_groups([(good_src, "add a red star", [good_ed, str(broken)]), (good_src, "", [good_ed])])
    assert grouped[0][0].error is None and "broken.png" in grouped[0][1].error
    assert "empty" in grouped[1][0].error
    _assert_same(grouped[0][0], results[0], atol=1e-4)


def test_from_checkpoint_scores_identically_and_aggregates(tmp_path, scorer):
    ckpt = save_checkpoint(scorer.model, scorer.processor, scorer.cfg, tmp_path / "ckpt")
    loaded = RewardScorer.from_checkpoint(ckpt, device="cpu")
    source, edited = _image(32, 32, 3), [_image(32, 32, 4), _image(48, 32, 5)]
    for a, b in zip(scorer.score_group(source, "add a star", edited), loaded.score_group(source, "add a star", edited)):
        assert a == b
    r = a
    assert r.score == pytest.approx(sum(r.mu.values()) / 2, abs=1e-6)  # mean aggregation
    assert r.score_sigma == pytest.approx(math.sqrt(sum(s * s for s in r.sigma.values())) / 2, abs=1e-6)


def test_cli_score_prints_a_table(tmp_path, scorer, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps cells at the captured terminal's default width
    ckpt = save_checkpoint(scorer.model, scorer.processor, scorer.cfg, tmp_path / "ckpt")
    paths = []
    for i, name in enumerate(["src.png", "a.png", "b.png"]):
        _image(32, 32, i).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    code = main(["reward", "score", "--checkpoint", str(ckpt), "--source", paths[0], "--instruction",
                 "remove the red circle", "--edited", paths[1], paths[2]])
    out = capsys.readouterr().out
    assert code == 0
    assert "a.png" in out and "b.png" in out and "visual_quality" in out and "score" in out
    expected = scorer.score_group(paths[0], "remove the red circle", paths[1:])
    assert f"{expected[0].score:.3f}" in out
    assert "P(row better than column), score" in out
    assert "E[sigmoid(z)]" in out and "sigmoid(mu_a - mu_b)" in out  # no extra.json: the paper's likelihood


def test_pairwise_probabilities_worked_by_hand():
    """mu 1 vs 0 with sigmas 0.6 and 0.8: Phi(1 / sqrt(0.36 + 0.64)) = Phi(1) = 0.841345; the reverse 0.158655;
    a failed edit gives None in its row and column."""
    from types import SimpleNamespace

    from reward.serve.commands import pairwise_probabilities

    def res(mu, sd, error=None):
        return SimpleNamespace(mu={"d": mu}, sigma={"d": sd}, score=mu, score_sigma=sd, error=error)

    p = pairwise_probabilities(["d"], [res(1.0, 0.6), res(0.0, 0.8), res(float("nan"), float("nan"), "bad")])
    assert p["d"][0][1] == pytest.approx(0.841345, abs=1e-6) and p["d"][1][0] == pytest.approx(0.158655, abs=1e-6)
    assert p["score"][0][1] == pytest.approx(0.841345, abs=1e-6)
    assert p["d"][0][0] is None and p["d"][0][2] is None and p["d"][2][1] is None
    assert pairwise_probabilities(["d"], [res(1.0, 0.6)]) == {}
    # the paper's likelihood at sigma -> 0 is sigmoid(delta): sigmoid(1) = 0.731059
    assert pairwise_probabilities(["d"], [res(1.0, 0.0), res(0.0, 0.0)], "logistic")["d"][0][1] == pytest.approx(
        0.731059, abs=1e-5)


def test_the_probability_formula_follows_the_training_loss(tmp_path):
    from reward.serve.commands import probability_formula

    assert probability_formula(tmp_path) == "logistic"
    (tmp_path / "extra.json").write_text('{"train_step": 3, "loss": "probit"}')
    assert probability_formula(tmp_path) == "thurstone"
    (tmp_path / "extra.json").write_text('{"loss": "uncertainty"}')
    assert probability_formula(tmp_path) == "logistic"
    (tmp_path / "extra.json").write_text("not json")
    assert probability_formula(tmp_path) == "logistic"


def test_pre_norm_head_input_reads_the_final_norms_input_and_keeps_prefix_equality():
    """head_input='pre_norm' feeds the heads what enters the final RMSNorm; shared-prefix scoring still equals full."""
    torch.manual_seed(0)
    cfg = RewardModelConfig(head_input="pre_norm")
    model, processor = build_reward_model(cfg)
    pre = RewardScorer(model, processor, cfg, batch_size=4)
    source, instruction = _image(48, 32, 0), "make the red circle blue"
    edited = [_image(32, 32, 20 + i) for i in range(3)]
    for g, f in zip(pre.score_group(source, instruction, edited), _full(pre, source, instruction, edited)):
        _assert_same(g, f, atol=1e-4)
    # Same weights read at the final (normed) state give different scores: the option really switches the input.
    a = _full(pre, source, instruction, edited)[0]
    final_cfg = RewardModelConfig(head_input="final")
    model.cfg = final_cfg
    final = RewardScorer(model, processor, final_cfg, batch_size=4)
    b = _full(final, source, instruction, edited)[0]
    assert abs(a.score - b.score) > 1e-3
