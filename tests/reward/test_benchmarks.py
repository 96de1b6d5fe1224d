"""Benchmark loaders, each on a small fixture written in that benchmark's layout (tiny PNGs)."""

import json
import math
from pathlib import Path

import pytest
from PIL import Image

from editrl.io import DataError
from reward.eval.loaders import (GroupItem, PairItem, PointItem, imagenhub_groups, imagenhub_human_upper_bound,
                                 load_aurora_bench, load_editreward_bench, load_genai_bench_edit, load_imagenhub)
from reward.eval.metrics import spearman_fisher_mean, strict_group_accuracy


def _png(path: Path, value: int = 0) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (value, value, value)).save(path)
    return path.name if path.parent.name == "images" else str(path)


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    for i, name in enumerate(["src.png", "a.png", "b.png", "c.png", "d.png"]):
        _png(tmp_path / "images" / name, 40 * i)
    return tmp_path


def test_genai_official_layout_labels_from_dim1(images: Path):
    rows = [
        {"prompt": "make it red", "path_src": "images/src.png", "path1": "images/a.png", "path2": "images/b.png",
         "model1_dim1_score": 3, "model2_dim1_score": 1},
        {"prompt": "make it red", "path_src": "images/src.png", "path1": "images/a.png", "path2": "images/b.png",
         "model1_dim1_score": 1.0, "model2_dim1_score": 2.0},
        {"prompt": "make it red", "path_src": "images/src.png", "path1": "images/a.png", "path2": "images/b.png",
         "model1_dim1_score": 2, "model2_dim1_score": 2},
    ]
    (images / "valid_set2_full.json").write_text(json.dumps(rows))
    items = load_genai_bench_edit(images / "valid_set2_full.json")
    assert [it.label for it in items] == [1, -1, 0]
    assert isinstance(items[0], PairItem) and items[0].first == str(images / "images" / "a.png")
    assert Path(items[0].source).is_file() and items[0].instruction == "make it red"


def test_genai_native_vote_rows_jsonl(images: Path):
    votes = ["leftvote", "rightvote", "tievote", "bothbad_vote"]
    lines = [json.dumps({"instruct_prompt": "add a hat", "source_image": "images/src.png", "left_image": "images/c.png",
                         "right_image": "images/d.png", "vote_type": v}) for v in votes]
    (images / "genai.jsonl").write_text("\n".join(lines) + "\n")
    assert [it.label for it in load_genai_bench_edit(images / "genai.jsonl")] == [1, -1, 0, 0]
    (images / "bad.jsonl").write_text(lines[0].replace("leftvote", "maybe") + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: field 'vote_type'"):
        load_genai_bench_edit(images / "bad.jsonl")


def test_aurora_pairs_with_image_root(images: Path):
    rows = [{"prompt": "move the cup", "path_src": "src.png", "path1": "a.png", "path2": "b.png",
             "model1_dim1_score": 0, "model2_dim1_score": 1}]
    (images / "ann").mkdir()
    (images / "ann" / "aurora.json").write_text(json.dumps(rows))
    items = load_aurora_bench(images / "ann" / "aurora.json", image_root=images / "images")
    assert items[0].label == -1 and items[0].second == str(images / "images" / "b.png")


def test_pair_layout_errors_name_file_index_and_field(images: Path):
    ok = {"prompt": "p", "path_src": "images/src.png", "path1": "images/a.png", "path2": "images/b.png",
          "model1_dim1_score": 1, "model2_dim1_score": 0}
    cases = [
        ({k: v for k, v in ok.items() if k != "path2"}, "field 'path2'"),
        ({**ok, "path1": "images/missing.png"}, "image not found: images/missing.png"),
        ({**ok, "model1_dim1_score": "high"}, "field 'model1_dim1_score'"),
        ({**ok, "prompt": "  "}, "field 'prompt'"),
    ]
    for row, message in cases:
        (images / "p.json").write_text(json.dumps([ok, row]))
        with pytest.raises(DataError, match=r"p\.json\[1\]") as err:
            load_genai_bench_edit(images / "p.json")
        assert message in str(err.value)
    (images / "p.json").write_text(json.dumps({"prompt": "not a list"}))
    with pytest.raises(DataError, match="expected a JSON list"):
        load_genai_bench_edit(images / "p.json")


def test_imagenhub_three_raters_groups_and_upper_bound(images: Path):
    """Model m1: raters agree perfectly on 3 items; model m2 mixes [SC, PQ] pairs: sqrt(1 * 0.25) = 0.5."""
    rows = []
    for model, scores in (("m1", [[0, 0, 0], [0.5, 0.5, 0.5], [1, 1, 1]]),
                          ("m2", [[[1, 0.25], [1, 1], [0, 1]], [[1, 1], [1, 1], [1, 1]], [[0, 0], [0, 0], [0.5, 0.5]]])):
        for k, s in enumerate(scores):
            rows.append({"instruction": f"edit {k}", "input_path": "images/src.png", "output_path": "images/a.png",
                         "model": model, "score": s})
    rows.append({"instruction": "single", "input_path": "images/src.png", "output_path": "images/b.png",
                 "model": "m3", "score": 0.5})
    (images / "imagenhub.json").write_text(json.dumps(rows))
    items = load_imagenhub(images / "imagenhub.json")
    assert isinstance(items[0], PointItem) and items[0].model_name == "m1"
    assert items[3].human_scores == pytest.approx((0.5, 1.0, 0.0)) and items[3].human_score == pytest.approx(0.5)
    assert items[6].human_scores == (0.5,)
    groups = imagenhub_groups(items[:6], [1, 2, 3, 3, 2, 1])
    assert groups[0] == ([1.0, 2.0, 3.0], [0.0, 0.5, 1.0])
    # m1 perfectly monotone (r = 1 -> clipped 0.999999); m2 human means (0.5, 1, 1/6) vs (3, 2, 1): r = 0.5
    expected = math.tanh((math.atanh(0.999999) + math.atanh(0.5)) / 2)
    assert spearman_fisher_mean(groups) == pytest.approx(expected, abs=1e-9)
    # raters of m1 agree exactly: every rater-vs-others correlation is 1
    assert imagenhub_human_upper_bound(items[:3]) == pytest.approx(0.999999, abs=1e-9)
    with pytest.raises(ValueError, match="raters"):
        imagenhub_human_upper_bound(items)
    (images / "imagenhub.json").write_text(json.dumps([{**rows[0], "score": [[1, 2, 3]]}]))
    with pytest.raises(DataError, match=r"\[0\]: field 'score'"):
        load_imagenhub(images / "imagenhub.json")


def test_editreward_bench_folder_of_k_files(images: Path):
    bench = images / "bench_dir"
    bench.mkdir()
    two = [{"prompt": "p", "path_src": "../images/src.png", "paths_generated": ["../images/a.png", "../images/b.png"],
            "human_vote": {"ranking": r}} for r in ("A>B", "B>A", "A=B=Good", "A<B")]
    three = [{"prompt": "p", "path_src": "../images/src.png",
              "paths_generated": ["../images/a.png", "../images/b.png", "../images/c.png"], "human_vote": {"ranking": "C>A>B"}}]
    four = [{"prompt": "p", "path_src": "../images/src.png",
             "paths_generated": ["../images/a.png", "../images/b.png", "../images/c.png", "../images/d.png"],
             "human_vote": {"ranking": "B>A>D>C"}}]
    for name, rows in (("EditReward_Bench_2pair.json", two), ("EditReward_Bench_3pair.json", three),
                       ("EditReward_Bench_4pair.json", four)):
        (bench / name).write_text(json.dumps(rows))
    items = load_editreward_bench(bench)
    assert [it.K for it in items] == [2, 2, 2, 2, 3, 4]
    assert [it.ranking for it in items] == ["A>B", "B>A", "A=B", "B>A", "C>A>B", "B>A>D>C"]
    assert isinstance(items[4], GroupItem) and Path(items[4].candidates[2]).is_file()
    # scores that realise every ranking exactly; the metric then counts every group right
    scores = [[2, 1], [1, 2], [1, 1], [1, 2], [2, 1, 3], [3, 4, 1, 2]]
    assert strict_group_accuracy(scores, [it.ranking for it in items]) == 1.0


def test_editreward_bench_editworld_layout_and_errors(images: Path):
    """editworld's bench file sits in bench/ with paths relative to the dataset root (one level up)."""
    (images / "bench").mkdir()
    rows = [{"id": "g0_k3", "K": 3, "prompt": "p", "path_src": "images/src.png",
             "candidates": ["images/a.png", "images/b.png", "images/c.png"], "ranking": "A=B>C", "scores": [3, 3, 1]}]
    (images / "bench" / "editreward_bench.json").write_text(json.dumps(rows))
    items = load_editreward_bench(images)
    assert items[0].ranking == "A=B>C" and items[0].candidates[0] == str(images / "images" / "a.png")
    rows[0]["ranking"] = "A>B>D"
    (images / "bench" / "editreward_bench.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"editreward_bench\.json\[0\]: field 'ranking'"):
        load_editreward_bench(images / "bench" / "editreward_bench.json")
    with pytest.raises(DataError, match="no EditReward-Bench files"):
        load_editreward_bench(images / "images")
