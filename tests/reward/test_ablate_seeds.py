"""`editrl reward ablate` over seeds: one run per (variant, seed), a within-task column, calibration per run, and
the summary's 95% t-intervals and paired differences worked by hand."""

import json

import pytest
import yaml

from editrl.cli import main
from editrl.config import ConfigError
from editrl.stats import t_interval
from reward.eval.ablate import AblationConfig, AblationVariant, runs_of, summarise
from tests.reward.test_ablate import BUDGET, TINY, world  # noqa: F401  (world is a fixture)


def test_t_interval_and_paired_verdicts_by_hand():
    """[0.6, 0.7, 0.8]: mean 0.7, sd 0.1, t_{0.975, 2} = 4.302653 -> half-width 0.1 * 4.302653 / sqrt(3) = 0.248414.
    A variant 0.05 above the reference on each seed (+-0.01) is "higher"; one that swings +-0.1 "within noise"."""
    mean, half = t_interval([0.6, 0.7, 0.8])
    assert mean == pytest.approx(0.7) and half == pytest.approx(0.248414, abs=1e-6)
    assert t_interval([0.5])[1] is None
    ref = [0.60, 0.70, 0.80]
    rows = [{"name": f"{v}-s{s}", "variant": v, "seed": s, "table": "T", "overrides": [], "pairwise_accuracy": a}
            for v, accs in (("reference", ref), ("up", [0.66, 0.74, 0.85]), ("noisy", [0.7, 0.6, 0.9]))
            for s, a in enumerate(accs)]
    summary = {e["variant"]: e for e in summarise(rows)}
    assert summary["up"]["pairwise_accuracy"]["vs_reference"]["verdict"] == "higher"
    assert summary["up"]["pairwise_accuracy"]["vs_reference"]["mean"] == pytest.approx(0.05)
    assert summary["noisy"]["pairwise_accuracy"]["vs_reference"]["verdict"] == "within noise"
    assert "vs_reference" not in summary["reference"]["pairwise_accuracy"]
    assert "within_task_accuracy" not in summary["reference"]


def test_runs_of_seeds_and_bad_seeds():
    cfg = AblationConfig(variants=[AblationVariant(name="a"), AblationVariant(name="b")], seeds=[3, 4])
    assert [(v.name, s, n) for v, s, n in runs_of(cfg)] == [("a", 3, "a-s3"), ("a", 4, "a-s4"), ("b", 3, "b-s3"),
                                                           ("b", 4, "b-s4")]
    assert [n for _, _, n in runs_of(AblationConfig(variants=[AblationVariant(name="a")]))] == ["a"]
    with pytest.raises(ConfigError, match="repeat"):
        runs_of(AblationConfig(variants=[AblationVariant(name="a")], seeds=[1, 1]))


@pytest.mark.slow  # four trainings and eight evaluations: ~40 s idle, minutes on a loaded 2-core machine
def test_ablate_over_seeds_with_within_task_and_calibration(world, tmp_path, capsys):  # noqa: F811
    cfg = tmp_path / "ablate.yaml"
    cfg.write_text(yaml.safe_dump({
        "base": "configs/reward/editworld-tiny.yaml", "data": str(world), "within_task": str(world),
        "overrides": TINY + BUDGET, "eval_batch_size": 32, "seeds": [0, 1],
        "variants": [{"name": "reference", "table": "T4", "overrides": []},
                     {"name": "probit", "table": "editrl", "overrides": ["data.loss=probit"]}]}))
    out = tmp_path / "out"
    assert main(["reward", "ablate", "--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "ablate.json").read_text())
    rows = {r["name"]: r for r in report["rows"]}
    assert list(rows) == ["reference-s0", "reference-s1", "probit-s0", "probit-s1"]
    assert [rows[n]["train_config"]["train"]["seed"] for n in rows] == [0, 1, 0, 1]
    assert rows["probit-s1"]["train_config"]["data"]["loss"] == "probit"
    for n, r in rows.items():
        assert 0 <= r["within_task_accuracy"] <= 1 and 0 <= r["eval"]["bench"]["ece_thurstone"] <= 0.5
        assert (out / n / "eval" / "bench" / "reliability.png").is_file()
        assert (out / n / "eval" / "within_task" / "calibration.json").is_file()
    summary = {e["variant"]: e for e in report["summary"]}
    assert summary["probit"]["seeds"] == [0, 1] and summary["probit"]["pairwise_accuracy"]["ci95"] is not None
    assert summary["probit"]["within_task_accuracy"]["vs_reference"]["n"] == 2
    assert "95% t-interval" in printed and (out / "ablate.png").stat().st_size > 1000
    # resumable: a second call retrains nothing
    assert main(["reward", "ablate", "--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.count("skipped") == 4
