"""Calibration of predicted P(a > b) against the true order: ECE by hand, both formulas, the report on synthetic
Gaussians whose truth is known, the disagreement Spearman, bad manifests, and `editrl reward eval`'s section."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

from editrl.io import DataError
from reward.eval.calibration import (calibration_report, expected_calibration_error, group_pairs, pair_probability,
                                     plot_reliability, true_scores_of)

DIMS = ["instruction_following", "visual_quality"]


def test_ece_by_hand():
    """p = 0.9 four times (3 right, 1 wrong): bin [0.90, 0.95), accuracy 0.75 vs confidence 0.9 -> gap 0.15.
    p = 0.6 (first better: right) and p = 0.4 (calls the second, but the first is better: wrong): confidence 0.6,
    bin [0.60, 0.65), accuracy 0.5 -> gap 0.1. ECE = 4/6 * 0.15 + 2/6 * 0.1 = 0.133333."""
    p = np.array([0.9, 0.9, 0.9, 0.9, 0.6, 0.4])
    y = np.array([1, 1, 1, 0, 1, 1], dtype=bool)
    r = expected_calibration_error(p, y, bins=10)
    assert r["ece"] == pytest.approx(0.1333333, abs=1e-6) and r["pairs"] == 6
    assert r["accuracy"] == pytest.approx(4 / 6)
    filled = [b for b in r["bins"] if b["pairs"]]
    assert [(b["lo"], b["pairs"], b["accuracy"]) for b in filled] == [
        (pytest.approx(0.6), 2, 0.5), (pytest.approx(0.9), 4, 0.75)]
    # every call made with confidence ~1 while 80% are right: ECE = 0.2
    p1 = np.full(1000, 1.0 - 1e-9)
    y1 = np.arange(1000) % 5 != 0
    assert expected_calibration_error(p1, y1)["ece"] == pytest.approx(0.2, abs=1e-6)
    assert expected_calibration_error(np.array([]), np.array([], dtype=bool))["ece"] is None
    with pytest.raises(ValueError):
        expected_calibration_error(p, y[:3])


def test_pair_probability_formulas():
    """thurstone: Phi(delta / s); s = 0 gives 1 / 0 / 0.5. logistic: E[sigmoid(z)], z ~ N(delta, s^2), against
    adaptive quadrature; sigmoid(delta) at s = 0; both symmetric (P(d) + P(-d) = 1)."""
    d, s = np.array([1.0, 1.0, -2.0, 0.0, 0.0]), np.array([1.0, 0.0, 0.0, 0.0, 3.0])
    assert pair_probability(d, s, "thurstone") == pytest.approx([0.841345, 1.0, 0.0, 0.5, 0.5], abs=1e-6)
    ref = integrate.quad(lambda z: 1 / (1 + math.exp(-z)) * stats.norm.pdf(z, 1.3, 2.0), -30, 30)[0]
    got = pair_probability(np.array([1.3, 1.3, 0.7]), np.array([2.0, 0.0, 0.5]), "logistic")
    assert got[0] == pytest.approx(ref, abs=1e-6) and got[1] == pytest.approx(1 / (1 + math.exp(-1.3)), abs=1e-9)
    both = pair_probability(np.array([0.7, -0.7]), np.array([0.5, 0.5]), "logistic")
    assert both.sum() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="formula"):
        pair_probability(d, s, "cauchit")


def test_group_pairs_skip_ties_and_other_groups():
    first, second, y = group_pairs(["a", "a", "a", "b", "b"], np.array([3.0, 1.0, 3.0, 2.0, 4.0]))
    assert list(zip(first, second, y)) == [(0, 1, True), (1, 2, False), (3, 4, False)]


def _synthetic(sigma_model: float, n_groups: int = 400, k: int = 6, noise: float = 0.5, seed: int = 0):
    """True scores ~ N(0, 3^2) per dimension (nearly flat prior), model means = truth + N(0, noise^2)."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0, 3.0, (n_groups * k, 2))
    mu = truth + rng.normal(0, noise, truth.shape)
    groups = [str(i // k) for i in range(n_groups * k)]
    return mu, np.full_like(mu, math.log(sigma_model)), groups, truth


def test_report_calibrated_versus_collapsed_sigma():
    """With sigma = the real noise of the means, Phi(delta / s) is calibrated (ECE < 0.03 on 6,000 pairs a
    column); with a collapsed sigma every call has confidence ~1 and ECE = 1 - accuracy."""
    mu, ls, groups, truth = _synthetic(0.5)
    good = calibration_report(mu, ls, groups, truth, DIMS, "mean")
    for col in ("overall", *DIMS):
        assert good[col]["thurstone"]["ece"] < 0.03, col
        assert good[col]["thurstone"]["pairs"] == 400 * 15
    collapsed = calibration_report(mu, np.full_like(mu, -12.0), groups, truth, DIMS, "mean")
    c = collapsed["overall"]["thurstone"]
    assert c["mean_confidence"] > 0.999 and c["ece"] == pytest.approx(1 - c["accuracy"], abs=1e-3)
    assert c["ece"] > 0.05 and c["accuracy"] == pytest.approx(good["overall"]["thurstone"]["accuracy"])
    assert good["sigma"]["overall_median"] == pytest.approx(math.sqrt(2 * 0.25) / 2)
    assert good["disagreement_spearman"] is None


def test_disagreement_spearman_follows_sigma(tmp_path):
    """Annotators who disagree more where the model's sigma is larger: positive Spearman on each dimension."""
    rng = np.random.default_rng(1)
    n = 60
    mu, truth = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    spread = np.linspace(0.1, 2.0, n)
    ls = np.log(np.stack([spread, spread[::-1]], 1))
    ann = [{DIMS[0]: list(2 + spread[i] * np.array([-1.0, 0.0, 1.0])),
            DIMS[1]: list(2 + spread[::-1][i] * np.array([-1.0, 0.5, 1.0]))} for i in range(n)]
    r = calibration_report(mu, ls, [str(i // 3) for i in range(n)], truth, DIMS, "mean", ann)
    sp = r["disagreement_spearman"]
    assert sp[DIMS[0]] == pytest.approx(1.0) and sp[DIMS[1]] == pytest.approx(1.0)
    assert plot_reliability(r, tmp_path / "rel.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="must be"):
        calibration_report(mu[:, :1], ls, [str(i) for i in range(n)], truth, DIMS)


def test_true_scores_missing_is_a_clear_error(tmp_path):
    from reward.eval.editworld_bench import BenchItem

    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"id": "a", "true_scores": {DIMS[0]: 3, DIMS[1]: 2}}) + "\n"
                        + json.dumps({"id": "b", "true_scores": {DIMS[0]: 3}}) + "\n")
    items = [BenchItem(i, "g", "s.png", "x", "e.png", {d: [1.0] for d in DIMS}, f"{manifest}:{ln}")
             for i, ln in (("a", 1), ("b", 2))]
    assert true_scores_of(items[:1], DIMS).tolist() == [[3.0, 2.0]]
    with pytest.raises(DataError, match="true_scores") as err:
        true_scores_of(items, DIMS)
    assert "manifest.jsonl" in str(err.value) and "2" in str(err.value)


def test_reward_eval_reports_calibration(tmp_path, capsys):
    """`editrl reward eval --data WORLD`: a calibration line per checkpoint, calibration.json, reliability.png."""
    from editrl.cli import main
    from editworld.config import WorldConfig
    from editworld.dataset import generate
    from tests.reward.test_eval_suite import save_tiny_checkpoint

    world = tmp_path / "world"
    generate(world, WorldConfig(groups=20, size=32, seed=5, workers=1, bench_fraction=0.5), progress=False)
    ckpt = save_tiny_checkpoint(tmp_path / "ckpt", 0)
    out = tmp_path / "out"
    assert main(["reward", "eval", "--checkpoint", str(ckpt), "--data", str(world), "--out", str(out),
                 "--batch-size", "16", "--baselines", "none"]) == 0
    printed = capsys.readouterr().out
    assert "calibration of reward model" in printed and "ECE overall: thurstone" in printed
    summary = json.loads((out / "calibration" / "summary.json").read_text())["reward model"]
    rep = json.loads(Path(summary["files"]["json"]).read_text())
    assert 0.0 <= rep["overall"]["thurstone"]["ece"] <= 0.5 and rep["overall"]["thurstone"]["pairs"] > 0
    assert set(rep["disagreement_spearman"]) == {"overall", *DIMS}
    assert Path(summary["files"]["png"]).stat().st_size > 1000
