import json

import numpy as np
import pytest
from PIL import Image
from scipy.stats import spearmanr

from editrl.cli import main
from editrl.io import DataError
from editworld import DIMENSIONS
from editworld.check import check_dataset
from editworld.config import WorldConfig
from editworld.dataset import generate, ranking_string
from editworld.editors import make_candidate, sample_candidate
from editworld.instructions import VERBS, InstructionError, parse_instruction
from editworld.oracle import oracle_scores
from editworld.tasks import HELD_OUT_SEED, Task, sample_tasks


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    generate(out, WorldConfig(groups=30, seed=3), progress=False)
    return out


def test_same_seed_byte_identical(world, tmp_path):
    generate(tmp_path, WorldConfig(groups=30, seed=3), progress=False)
    for name in ("manifest.jsonl", "pairs.jsonl", "editreward_pairs.json", "bench/editreward_bench.json"):
        assert (tmp_path / name).read_bytes() == (world / name).read_bytes(), name


def test_grammar_round_trip_covers_every_verb():
    tasks = sample_tasks(200, 11)
    assert {t.op.verb for t in tasks} == set(VERBS)
    for t in tasks:
        assert parse_instruction(t.instruction) == t.op
        assert Task.from_dict(json.loads(json.dumps(t.to_dict()))) == t


def test_unknown_verb_is_named():
    with pytest.raises(InstructionError, match="'paint'"):
        parse_instruction("paint the red circle blue")


def test_oracle_sanity():
    for task in sample_tasks(20, HELD_OUT_SEED):
        perfect = oracle_scores(task, task.target_image())
        assert perfect == {"instruction_following": 4.0, "visual_quality": 4.0}
        assert oracle_scores(task, task.source_image())["instruction_following"] <= 1.5
        noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        s = oracle_scores(task, noise)
        assert s["visual_quality"] <= 1.5 and s["instruction_following"] <= 2.5


def test_oracle_agrees_with_truth():
    rng = np.random.default_rng(0)
    true, pred = {d: [] for d in DIMENSIONS}, {d: [] for d in DIMENSIONS}
    for task in sample_tasks(60, 5):
        for _ in range(7):
            c = sample_candidate(task, 32, rng)
            s = oracle_scores(task, c.image)
            for d in DIMENSIONS:
                true[d].append(c.scores[d])
                pred[d].append(s[d])
    assert spearmanr(true["instruction_following"], pred["instruction_following"])[0] >= 0.9
    assert spearmanr(true["visual_quality"], pred["visual_quality"])[0] >= 0.9


def test_failure_modes_score_as_rubric():
    task = sample_tasks(1, 2)[0]
    rng = np.random.default_rng(1)
    assert make_candidate(task, "none", 1, "none", 1, 32, rng).scores == {"instruction_following": 4, "visual_quality": 4}
    assert make_candidate(task, "no_op", 1, "none", 1, 32, rng).scores["instruction_following"] == 1
    assert make_candidate(task, "none", 1, "noise", 3, 32, rng).scores["visual_quality"] == 1


def test_pairs_and_bench_layout(world):
    pairs = [json.loads(l) for l in (world / "pairs.jsonl").read_text().splitlines()]
    overall = lambda s: (s["instruction_following"] + s["visual_quality"]) / 2
    for p in pairs:
        assert overall(p["preferred_scores"]) >= overall(p["rejected_scores"])
        assert p["tie"] == (overall(p["preferred_scores"]) == overall(p["rejected_scores"]))
        if p["disentangle"]:
            assert p["tie"]
    official = json.loads((world / "editreward_pairs.json").read_text())
    assert len(official) == len(pairs) and {"prompt", "path_src", "path1", "path2", "model1_dim1_score"} <= set(official[0])
    bench = json.loads((world / "bench" / "editreward_bench.json").read_text())
    assert {b["K"] for b in bench} == {2, 3, 4}
    for b in bench:
        assert len(b["candidates"]) == b["K"] and sorted(b["ranking"].replace(">", "").replace("=", "")) == list("ABCD"[: b["K"]])
    assert ranking_string([1.0, 3.0, 1.0]) == "B>A=C"


def test_check_cli_and_bad_inputs(world, tmp_path, capsys):
    assert main(["world", "check", str(world)]) == 0
    assert "oracle vs true" in capsys.readouterr().out
    rows = (world / "manifest.jsonl").read_text().splitlines()

    def broken(lines, name):
        d = tmp_path / name
        d.mkdir()
        (d / "images").symlink_to(world / "images")
        (d / "manifest.jsonl").write_text("\n".join(lines) + "\n")
        return d

    bad_json = broken([rows[0], "{oops"], "badjson")
    with pytest.raises(DataError, match=r"manifest.jsonl:2"):
        check_dataset(bad_json)
    row = json.loads(rows[0])
    row["instruction"] = "paint the red circle blue"
    with pytest.raises(DataError, match=r"manifest.jsonl:1: field 'instruction'.*'paint'"):
        check_dataset(broken([json.dumps(row)], "badverb"))
    row = json.loads(rows[0])
    row["edited"] = "images/missing.png"
    with pytest.raises(DataError, match=r"manifest.jsonl:1: field 'edited'"):
        check_dataset(broken([json.dumps(row)], "missing"))
    assert main(["world", "check", str(tmp_path / "nowhere")]) == 2


def test_generate_cli(tmp_path, capsys):
    assert main(["world", "generate", "--out", str(tmp_path / "w"), "--groups", "4", "--seed", "1"]) == 0
    assert (tmp_path / "w" / "config.yaml").is_file()
    assert Image.open(tmp_path / "w" / "images" / "g000000_c0.png").size == (32, 32)
