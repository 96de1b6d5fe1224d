"""`editrl reward eval`: Table 2 over fixtures of every benchmark layout, saved scores, --from-scores, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from editrl.cli import main
from editrl.dimensions import DIMENSIONS

IF, VQ = DIMENSIONS
TINY = ["pixel_area=784", "tiny.hidden_size=64", "tiny.num_hidden_layers=2", "tiny.num_attention_heads=2",
        "tiny.num_key_value_heads=2", "tiny.intermediate_size=128", "tiny.vision_depth=2", "tiny.vision_hidden_size=32",
        "tiny.vision_num_heads=2", "tiny.vision_intermediate_size=64", "tiny.vision_fullatt_block_indexes=[1]",
        "head_width=32", "tiny.vocab_merges=20"]
PAIR_COLS = ("genai_ties", "genai", "aurora_ties", "aurora")
ALL_COLS = (*PAIR_COLS, "imagenhub", "editreward_k2", "editreward_k3", "editreward_k4", "editreward_overall", "editworld")


def _png(root: Path, name: str, seed: int) -> str:
    """A distinct 16x16 image (noise of a per-image colour), relative to ``root``."""
    rng = np.random.default_rng(seed)
    arr = np.clip(rng.integers(0, 256, 3) + rng.normal(0, 30, (16, 16, 3)), 0, 255).astype(np.uint8)
    (root / "images").mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(root / "images" / name)
    return f"images/{name}"


def write_benches(root: Path) -> dict[str, Path]:
    """One small fixture per external layout, plus an editworld dataset; returns {bench: path}."""
    src = _png(root, "src.png", 0)
    cands = [_png(root, f"c{i}.png", i + 1) for i in range(8)]
    # GenAI-Bench native vote rows (JSONL)
    votes = ["leftvote", "rightvote", "tievote", "leftvote", "rightvote", "bothbad_vote"]
    (root / "genai.jsonl").write_text("".join(json.dumps({
        "instruct_prompt": "make it red", "source_image": src, "left_image": cands[i], "right_image": cands[i + 1],
        "vote_type": v}) + "\n" for i, v in enumerate(votes)))
    # AURORA-Bench official processed layout
    aurora = [{"prompt": "move the cup", "path_src": src, "path1": cands[i], "path2": cands[7 - i],
               "model1_dim1_score": s1, "model2_dim1_score": s2}
              for i, (s1, s2) in enumerate([(3, 1), (1, 2), (2, 2), (0, 1), (2, 0)])]
    (root / "aurora.json").write_text(json.dumps(aurora))
    # ImagenHub: two editing models x 4 edits, three raters
    hub = []
    for m, model in enumerate(("m1", "m2")):
        for k in range(4):
            hub.append({"instruction": f"edit {k}", "input_path": src, "output_path": cands[(k + 3 * m) % 8],
                        "model": model, "score": [k / 3, min(1, k / 3 + 0.1 * m), abs(k - 1) / 3]})
    (root / "imagenhub.json").write_text(json.dumps(hub))
    # EditReward-Bench folder of K = 2 / 3 / 4 files (paths relative to the folder's parent via ../)
    er = root / "editreward"
    er.mkdir()
    groups = {2: ["A>B", "B>A", "A=B=Good"], 3: ["C>A>B", "A=B>C"], 4: ["B>A>D>C", "A>B>C>D"]}
    for k, rankings in groups.items():
        rows = [{"prompt": "p", "path_src": f"../{src}", "paths_generated": [f"../{cands[(g + j) % 8]}" for j in range(k)],
                 "human_vote": {"ranking": r}} for g, r in enumerate(rankings)]
        (er / f"EditReward_Bench_{k}pair.json").write_text(json.dumps(rows))
    # editworld: a bench split of 4 groups x 3 candidates (3 annotators)
    world = root / "world"
    world.mkdir()
    manifest = []
    for g in range(4):
        s = _png(world, f"{g}_src.png", 100 + g)
        for kind, (a, b) in {"good": (4, 4), "bad": (4, 1), "noop": (1, 2)}.items():
            manifest.append({"id": f"{g}-{kind}", "group_id": g, "split": "bench", "source": s,
                             "edited": _png(world, f"{g}_{kind}.png", 200 + 3 * g + len(kind)),
                             "instruction": "add a red square", "true_scores": {IF: a, VQ: b},
                             "human_scores": {IF: [a] * 3, VQ: [b] * 3}})
    (world / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in manifest))
    return {"genai": root / "genai.jsonl", "aurora": root / "aurora.json", "imagenhub": root / "imagenhub.json",
            "editreward": er, "editworld": world}


def save_tiny_checkpoint(path: Path, seed: int) -> Path:
    from editrl.config import load_config
    from reward.model.config import RewardModelConfig
    from reward.model.editreward import build_reward_model, save_checkpoint

    cfg = load_config(RewardModelConfig, None, [*TINY, f"tiny.seed={seed}"])
    model, processor = build_reward_model(cfg)
    return save_checkpoint(model, processor, cfg, path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_suite")
    benches = write_benches(root / "data")
    ckpts = [save_tiny_checkpoint(root / "ckpt_a", 0), save_tiny_checkpoint(root / "ckpt_b", 1)]
    out = root / "out"
    args = ["reward", "eval", "--checkpoint", str(ckpts[0]), "--checkpoint", str(ckpts[1]),
            "--data", str(benches["editworld"]), "--out", str(out), "--batch-size", "8"]
    for name in ("genai", "aurora", "imagenhub", "editreward"):
        args += ["--bench", f"{name}={benches[name]}"]
    return root, benches, ckpts, out, args


def _check_range(rows: dict, methods) -> None:
    for m in methods:
        for col in ALL_COLS:
            v = rows[m][col]
            assert v is not None, (m, col)
            assert (-1 <= v <= 1) if col == "imagenhub" else (0 <= v <= 1), (m, col, v)


def test_full_suite_writes_table_scores_and_plot(setup, capsys):
    root, benches, ckpts, out, args = setup
    assert main(args) == 0
    printed = capsys.readouterr().out
    for name in ("reward model (ckpt_a)", "reward model (ckpt_b)", "untrained", "pixel-difference", "random",
                 "GenAI", "AURORA", "ImagenHub", "K=4", "editworld", "position bias"):
        assert name in printed, name
    table = json.loads((out / "table2.json").read_text())
    methods = ["reward model (ckpt_a)", "reward model (ckpt_b)", "random", "pixel-difference heuristic",
               "untrained backbone + heads"]
    assert set(methods) <= set(table["rows"])
    _check_range(table["rows"], methods)
    assert table["rows"]["human (upper bound)"]["imagenhub"] is not None
    assert table["rows"]["human (upper bound)"]["genai"] is None
    d = table["details"]["reward model (ckpt_a)"]
    assert d["genai"]["eps"] >= 0 and d["editreward"]["eps"] >= 0 and d["editreward"]["groups"] == 7
    pb = d["aurora"]["position_bias"]  # point-wise: swapping the pair changes nothing
    assert pb["accuracy_given"] == pb["accuracy_swapped"] and pb["bias"] == 0
    assert (out / "table2.png").stat().st_size > 1000
    for slug in ("reward_model_ckpt_a", "reward_model_ckpt_b", "random", "pixel", "untrained"):
        for bench in ("genai", "aurora", "imagenhub", "editreward", "editworld"):
            assert (out / "scores" / slug / f"{bench}.jsonl").is_file(), (slug, bench)
    assert len((out / "scores" / "random" / "genai.jsonl").read_text().splitlines()) == 6
    # the editworld-only outputs of the old command are still there
    legacy = json.loads((out / "editworld_eval.json").read_text())["results"]
    assert legacy["reward model (ckpt_a)"]["pairs"] == 4 * 3  # every pair non-tied (sums 8, 5, 3)


def test_from_scores_reproduces_the_table_and_scores_an_oracle(setup, tmp_path):
    root, benches, ckpts, out, args = setup
    if not (out / "table2.json").is_file():
        assert main(args) == 0
    first = json.loads((out / "table2.json").read_text())
    again = tmp_path / "again"
    assert main(["reward", "eval", "--from-scores", str(out), "--out", str(again)]) == 0
    second = json.loads((again / "table2.json").read_text())
    assert second["rows"] == first["rows"] and second["details"] == first["details"]
    assert (again / "table2.png").is_file()

    # a hand-made oracle: scores that agree with the humans everywhere
    work = tmp_path / "work"
    shutil.copytree(out / "scores", work / "scores")
    shutil.copy(out / "methods.json", work / "methods.json")
    oracle = work / "scores" / "oracle"
    oracle.mkdir()
    for bench in ("genai", "aurora", "imagenhub", "editreward", "editworld"):
        rows = [json.loads(x) for x in (out / "scores" / "random" / f"{bench}.jsonl").read_text().splitlines()]
        for r in rows:
            if bench in ("genai", "aurora"):
                r["scores"] = [float(r["label"]), 0.0]
            elif bench == "imagenhub":
                r["scores"] = [float(np.mean(r["human_scores"]))]
            elif bench == "editreward":
                levels = {}
                for lvl, tier in enumerate(r["ranking"].split(">")):
                    for letter in tier.split("="):
                        levels[ord(letter) - 65] = lvl
                r["scores"] = [-float(levels[i]) for i in range(len(r["scores"]))]
            else:
                r["scores"] = [float(sum(np.mean(v) for v in r["human_scores"].values()))]
        (oracle / f"{bench}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["reward", "eval", "--from-scores", str(work)]) == 0  # no model is loaded
    table = json.loads((work / "table2.json").read_text())
    row = table["rows"]["oracle"]
    for col in ALL_COLS:
        if col == "imagenhub":
            assert row[col] == pytest.approx(1.0, abs=1e-5)
        else:
            assert row[col] == 1.0, col
    assert table["rows"]["random"] == first["rows"]["random"]


def test_bad_input_names_the_problem(setup, tmp_path, capsys):
    root, benches, ckpts, out, args = setup
    base = ["reward", "eval", "--checkpoint", str(ckpts[0]), "--out", str(tmp_path / "o")]
    assert main([*base, "--bench", f"mystery={benches['genai']}"]) == 2
    assert "mystery" in capsys.readouterr().err
    assert main([*base, "--bench", f"aurora={tmp_path / 'nope.json'}"]) == 2
    assert "nope.json" in capsys.readouterr().err
    assert main([*base, "--bench", "genai"]) == 2
    assert "NAME=PATH" in capsys.readouterr().err
    assert main([*base, "--data", str(benches["editworld"]), "--baselines", "oracle"]) == 2
    assert "oracle" in capsys.readouterr().err
    assert main(["reward", "eval", "--from-scores", str(tmp_path / "empty")]) == 2
    assert "scores" in capsys.readouterr().err
    bad = tmp_path / "bad"
    (bad / "scores" / "m").mkdir(parents=True)
    (bad / "scores" / "m" / "genai.jsonl").write_text(json.dumps({"scores": [1.0], "label": 1}) + "\n")
    assert main(["reward", "eval", "--from-scores", str(bad)]) == 2
    assert "genai.jsonl:1" in capsys.readouterr().err


def test_editworld_only_keeps_the_old_outputs(setup, tmp_path, capsys):
    root, benches, ckpts, out, args = setup
    o = tmp_path / "o"
    assert main(["reward", "eval", "--checkpoint", str(ckpts[0]), "--data", str(benches["editworld"]),
                 "--out", str(o), "--max-items", "6"]) == 0
    printed = capsys.readouterr().out
    for name in ("reward model", "untrained", "pixel-difference", "random"):
        assert name in printed
    res = json.loads((o / "editworld_eval.json").read_text())["results"]
    assert res["reward model"]["pairs"] == 2 * 3 and set(res) == {
        "reward model", "untrained backbone + heads", "pixel-difference heuristic", "random"}
    assert (o / "scores_reward.jsonl").is_file()
    row = json.loads((o / "table2.json").read_text())["rows"]["reward model"]
    assert row["editworld"] is not None and row["genai"] is None and "human (upper bound)" not in \
        json.loads((o / "table2.json").read_text())["rows"]


def test_an_ensemble_is_evaluated_as_its_members_mean_score(setup, tmp_path, capsys):
    root, benches, ckpts, out, args = setup
    o = tmp_path / "o"
    spec = f"ensemble:{ckpts[0]},{ckpts[1]}"
    assert main(["reward", "eval", "--checkpoint", str(ckpts[0]), "--checkpoint", str(ckpts[1]),
                 "--checkpoint", spec, "--data", str(benches["editworld"]), "--out", str(o), "--no-baselines"]) == 0
    assert "ensemble of ckpt_a + ckpt_b" in capsys.readouterr().out
    names = json.loads((o / "methods.json").read_text())
    slugs = {v: k for k, v in names.items()}
    rows = {}
    for label in ("reward model (ckpt_a)", "reward model (ckpt_b)", "reward model (ensemble of ckpt_a + ckpt_b)"):
        rows[label] = [json.loads(line)["scores"][0]
                       for line in (o / "scores" / slugs[label] / "editworld.jsonl").read_text().splitlines()]
    a, b, e = rows.values()
    assert e == pytest.approx([(x + y) / 2 for x, y in zip(a, b)], abs=1e-6)
    assert a != pytest.approx(b)  # two different members, so the mean is not one of them
    missing = tmp_path / "nope"
    assert main(["reward", "eval", "--checkpoint", f"ensemble:{ckpts[0]},{missing}", "--data",
                 str(benches["editworld"]), "--out", str(tmp_path / "o2"), "--no-baselines"]) != 0
    assert f"{missing}: reward checkpoint directory not found" in capsys.readouterr().err


def test_accuracy_by_gap_splits_pairs_by_how_far_apart_the_humans_put_them():
    from reward.eval.editworld_bench import BenchItem, accuracy_by_gap, human_pairs

    def item(i, if_score, vq_score):
        return BenchItem(id=str(i), group_id="g", source="", instruction="", edited="",
                         human_scores={IF: [if_score], VQ: [vq_score]}, origin="")

    # per-dimension means 3.0, 3.05, 3.5, 2.0; the model orders them 3 > 0 > 1 > 2, against the humans' 2 > 1 > 0 > 3
    items = [item(0, 3.0, 3.0), item(1, 3.0, 3.1), item(2, 3.5, 3.5), item(3, 2.0, 2.0)]
    scores = [0.2, 0.1, 0.0, 0.3]
    first, second, label = human_pairs(items)
    bins = accuracy_by_gap(scores, items, first, second, label, edges=(0.1, 0.5))
    # pair gaps: (0,1) 0.05 wrong; (0,2) 0.5 wrong; (0,3) 1.0 wrong; (1,2) 0.45 wrong; (1,3) 1.05 wrong; (2,3) 1.5 wrong
    assert [b["pairs"] for b in bins] == [1, 1, 4]
    assert [b["accuracy"] for b in bins] == [0.0, 0.0, 0.0]
    bins = accuracy_by_gap([0.1, 0.2, 0.3, 0.0], items, first, second, label, edges=(0.1, 0.5, 5.0, 6.0))
    # model order 2 > 1 > 0 > 3: every pair right; the last two bins are empty
    assert [b["pairs"] for b in bins] == [1, 1, 4, 0, 0]
    assert [b["accuracy"] for b in bins] == [1.0, 1.0, 1.0, None, None]
    assert bins[0]["low"] == 0.0 and bins[-1]["high"] is None
