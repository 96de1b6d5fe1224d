"""Best-of-N: the selection rules on hand-worked numbers, the sweep table, and `editrl best-of-n` end to end on a
tiny random editor and a tiny random reward checkpoint (single request and a 2-task sweep)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from editrl.cli import main
from editrl.dimensions import DIMENSIONS as DIMS
from reward.serve.scorer import ScoredEdit
from rollout.best_of_n import SweepTask, choose, pick_gains, ranking, rule_key, sweep_table


def _scored(score: float, sigma: float) -> ScoredEdit:
    return ScoredEdit(mu={d: score for d in DIMS}, sigma={d: sigma for d in DIMS}, score=score, score_sigma=sigma)


# A: high mean, very unsure; B: a bit lower, sure; C: low, sure
A, B, C = _scored(3.0, 1.0), _scored(2.6, 0.2), _scored(2.0, 0.1)


def test_aggregate_and_lcb_choose_different_candidates():
    scores = [A, B, C]
    # aggregate: 3.0 > 2.6 > 2.0
    assert choose(scores, "aggregate") == 0 and ranking(scores, "aggregate") == [0, 1, 2]
    # lcb, k = 1: A 3.0 - 1.0 = 2.0, B 2.6 - 0.2 = 2.4, C 2.0 - 0.1 = 1.9
    assert rule_key(A, "lcb", 1.0) == pytest.approx(2.0) and rule_key(B, "lcb", 1.0) == pytest.approx(2.4)
    assert choose(scores, "lcb", k=1.0) == 1 and ranking(scores, "lcb", 1.0) == [1, 0, 2]
    # lcb, k = 3: A 0.0, B 2.0, C 1.7
    assert ranking(scores, "lcb", 3.0) == [1, 2, 0]
    # k = 0 is the aggregate rule
    assert choose(scores, "lcb", k=0.0) == 0


def test_failed_items_rank_last_and_ties_keep_order():
    bad = ScoredEdit.failed(DIMS, "cannot decode")
    assert ranking([bad, C, A], "aggregate") == [2, 1, 0]
    assert choose([bad, C], "lcb", 1.0) == 1
    assert ranking([C, _scored(2.0, 0.1)], "aggregate") == [0, 1]
    with pytest.raises(ValueError, match="could be scored"):
        choose([bad, bad], "aggregate")
    with pytest.raises(ValueError, match="unknown selection rule"):
        choose([A], "median")


def test_sweep_table_on_hand_worked_numbers():
    o = lambda a, b: {"instruction_following": a, "visual_quality": b}  # noqa: E731
    tasks = [SweepTask("t0", [A, B, C], [o(1.0, 1.0), o(3.0, 3.0), o(4.0, 2.0)]),
             SweepTask("t1", [C, B, A], [o(2.0, 2.0), o(3.0, 1.0), o(1.0, 1.0)])]
    table = sweep_table(tasks, [1, 2, 3], k=1.0)
    # N = 1: every method takes the first candidate
    for m in ("aggregate", "lcb", "random", "oracle_best"):
        assert table["1"][m]["instruction_following"] == pytest.approx(1.5)
    # N = 2, aggregate: t0 picks A (oracle 1,1), t1 picks B (3,1); lcb: t0 B (3,3), t1 B (3,1)
    assert table["2"]["aggregate"]["instruction_following"] == pytest.approx(2.0)
    assert table["2"]["lcb"]["instruction_following"] == pytest.approx(3.0)
    assert table["2"]["lcb"]["visual_quality"] == pytest.approx(2.0)
    # random = mean of the first N; oracle best = best mean of dims among them
    assert table["2"]["random"]["instruction_following"] == pytest.approx((2.0 + 2.5) / 2)
    assert table["3"]["oracle_best"]["mean"] == pytest.approx((3.0 + 2.0) / 2)
    assert table["3"]["oracle_best"]["se"] == pytest.approx(0.5)


def test_pick_gains_on_hand_worked_numbers():
    """Oracle means (t0: 1, 3, 3; t1: 2, 2, 1). N = 2, aggregate: t0 picks A (1) against random 2 -> -1, headroom 1;
    t1 picks B (2) against random 2 -> 0, headroom 0. Gain -0.5, t-interval half-width t(0.975, 1) * 0.7071 / sqrt 2
    = 6.353, headroom 0.5, recovered -100%. N = 3, lcb (k 1): both pick B: t0 3 - 7/3 = 2/3 (headroom 2/3), t1
    2 - 5/3 = 1/3 (headroom 1/3): gain 0.5, headroom 0.5, recovered 100%."""
    o = lambda a, b: {"instruction_following": a, "visual_quality": b}  # noqa: E731
    tasks = [SweepTask("t0", [A, B, C], [o(1.0, 1.0), o(3.0, 3.0), o(4.0, 2.0)]),
             SweepTask("t1", [C, B, A], [o(2.0, 2.0), o(3.0, 1.0), o(1.0, 1.0)])]
    g = pick_gains(tasks, [2], "aggregate")["2"]
    assert g["gain"] == pytest.approx(-0.5) and g["headroom"] == pytest.approx(0.5)
    assert g["recovered"] == pytest.approx(-1.0)
    assert (g["ci_low"], g["ci_high"]) == pytest.approx((-0.5 - 6.3531, -0.5 + 6.3531), abs=1e-3)
    g3 = pick_gains(tasks, [3], "lcb", k=1.0)["3"]
    assert g3["gain"] == pytest.approx(0.5) and g3["headroom"] == pytest.approx(0.5) and g3["recovered"] == 1.0


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def pieces(tmp_path_factory):
    from reward.model.config import RewardModelConfig
    from reward.model.editreward import build_reward_model, save_checkpoint
    from rollout.tiny_editor import TinyEditor, TinyEditorConfig

    root = tmp_path_factory.mktemp("bon")
    cfg = TinyEditorConfig(image_size=32, patch=8, num_heads=2, head_dim=16, axes_dims_rope=(4, 6, 6),
                           double_layers=1, single_layers=1, text_hidden=32, text_layers=1, text_heads=2,
                           max_text_length=12)
    editor_dir = TinyEditor.from_config(cfg, seed=0).save_pretrained(root / "editor")
    torch.manual_seed(0)
    rcfg = RewardModelConfig()
    model, processor = build_reward_model(rcfg)
    ckpt = save_checkpoint(model, processor, rcfg, root / "reward")
    source = root / "source.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(source)
    return editor_dir, ckpt, source


@pytest.mark.parametrize("select", ["aggregate", "lcb"])
def test_cli_single_request_writes_ranked_outputs(pieces, tmp_path, select, capsys):
    editor_dir, ckpt, source = pieces
    out = tmp_path / "bon"
    code = main(["best-of-n", "--editor", str(editor_dir), "--reward", str(ckpt), "--n", "4", "--source", str(source),
                 "--instruction", "make the red circle blue", "--out", str(out), "--select", select, "--k", "1.0",
                 "--steps", "3"])
    assert code == 0
    for name in ("chosen.png", "source.png", "scores.json", "grid.png", "index.html"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "candidates").iterdir()) == ["00.png", "01.png", "02.png", "03.png"]
    doc = json.loads((out / "scores.json").read_text())
    rows = doc["candidates"]
    assert len(rows) == 4 and doc["n"] == 4 and doc["select"] == select
    assert sorted(r["rank"] for r in rows) == [1, 2, 3, 4]
    for r in rows:
        assert set(r["mu"]) == set(DIMS) and set(r["sigma"]) == set(DIMS)
        assert r["lcb"] == pytest.approx(r["aggregate"] - 1.0 * r["aggregate_sigma"], abs=1e-6)
        assert r["selection_score"] == pytest.approx(r["aggregate"] if select == "aggregate" else r["lcb"])
    by_rank = sorted(rows, key=lambda r: r["rank"])
    keys = [r["selection_score"] for r in by_rank]
    assert keys == sorted(keys, reverse=True)
    assert by_rank[0]["chosen"] and doc["chosen"] == by_rank[0]["index"] and sum(r["chosen"] for r in rows) == 1
    chosen = np.asarray(Image.open(out / "chosen.png"))
    assert np.array_equal(chosen, np.asarray(Image.open(out / "candidates" / f"{doc['chosen']:02d}.png")))
    # SDE sampling: the candidates differ
    c = [np.asarray(Image.open(out / "candidates" / f"{i:02d}.png")) for i in range(4)]
    assert not all(np.array_equal(c[0], x) for x in c[1:])
    assert "mu" in (out / "index.html").read_text()
    assert "best-of-4" in capsys.readouterr().out


def test_cli_sweep_writes_json_and_plot(pieces, tmp_path, capsys):
    editor_dir, ckpt, _ = pieces
    out = tmp_path / "sweep"
    code = main(["best-of-n", "--sweep", "--editor", str(editor_dir), "--reward", str(ckpt), "--tasks", "2",
                 "--ns", "1,2", "--steps", "3", "--out", str(out), "--no-progress"])
    assert code == 0
    assert (out / "sweep.png").is_file()
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["ns"] == [1, 2] and set(doc["results"]) == {"1", "2"} and doc["num_tasks"] == 2
    for n in ("1", "2"):
        assert set(doc["results"][n]) == {"aggregate", "lcb", "random", "oracle_best"}
        for v in doc["results"][n].values():
            assert 1.0 <= v["instruction_following"] <= 4.0 and 1.0 <= v["visual_quality"] <= 4.0
    # N = 1: the reward model has no choice; choosing among more can only help the oracle-best bound
    one, two = doc["results"]["1"], doc["results"]["2"]
    assert one["aggregate"]["mean"] == pytest.approx(one["random"]["mean"])
    assert two["oracle_best"]["mean"] >= one["oracle_best"]["mean"] - 1e-9
    # the paired gain of the pick over random: none at N = 1, and at N = 2 the table's difference of means
    assert doc["gains"]["1"]["gain"] == pytest.approx(0.0) and doc["gains"]["1"]["headroom"] == pytest.approx(0.0)
    assert doc["gains"]["2"]["gain"] == pytest.approx(two["aggregate"]["mean"] - two["random"]["mean"])
    assert two["oracle_best"]["mean"] >= max(two["aggregate"]["mean"], two["random"]["mean"]) - 1e-9
    assert len(doc["per_task"]) == 2 and all(len(t["oracle"]) == 2 for t in doc["per_task"])
    assert not math.isnan(doc["results"]["2"]["aggregate"]["mean"])
    assert "oracle best" in capsys.readouterr().out


def test_cli_rejects_bad_input(pieces, tmp_path, capsys):
    editor_dir, ckpt, source = pieces
    assert main(["best-of-n", "--editor", str(editor_dir), "--reward", str(tmp_path / "nope"), "--n", "2",
                 "--source", str(source), "--instruction", "x", "--out", str(tmp_path / "o")]) == 2
    assert main(["best-of-n", "--sweep", "--editor", str(editor_dir), "--reward", str(ckpt), "--ns", "0,2",
                 "--out", str(tmp_path / "o")]) == 2
    assert main(["best-of-n", "--sweep", "--editor", str(editor_dir), "--reward", str(ckpt), "--noise-level", "-1",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "reward checkpoint" in err and "--ns" in err and "--noise-level" in err and "must be >= 0" in err


def test_ode_candidates_differ_in_their_initial_noise(pieces):
    """noise_level 0: deterministic ODE sampling, yet the N candidates of a row start from different noise."""
    from rollout.best_of_n import sample_groups
    from rollout.tiny_editor import TinyEditor

    editor_dir, _, source = pieces
    editor = TinyEditor.from_pretrained(editor_dir)
    src = Image.open(source).convert("RGB")
    groups = sample_groups(editor, [src], ["make it red"], 3, num_steps=2, noise_level=0.0, seed=0)
    arrays = [np.asarray(im, dtype=np.float64) for im in groups[0]]
    assert len(arrays) == 3 and all(np.abs(arrays[0] - a).mean() > 0 for a in arrays[1:])
    again = sample_groups(editor, [src], ["make it red"], 3, num_steps=2, noise_level=0.0, seed=0)
    assert all(np.array_equal(a, np.asarray(b, dtype=np.float64)) for a, b in zip(arrays, again[0]))


def test_reward_spec_from_service_flags(tmp_path):
    import argparse

    from rollout.best_of_n_commands import reward_spec

    ns = lambda **kw: argparse.Namespace(**{"reward": None, "service": None, "ray_address": None, **kw})  # noqa: E731
    assert reward_spec(ns(service="editrl-reward")) == "ray://editrl-reward"
    assert reward_spec(ns(service="r", ray_address="127.0.0.1:6379")) == "ray://r@127.0.0.1:6379"
    assert reward_spec(ns(reward="ray://r@auto")) == "ray://r@auto"
    assert reward_spec(ns(reward=str(tmp_path))) == str(tmp_path)
