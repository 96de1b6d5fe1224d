"""The official EditReward evaluation protocol (reward.eval.official_protocol) against the official functions' outputs
(tests/data/editreward_protocol/), the hub and AURORA point-wise loaders, and both tables of `reward eval --from-scores`."""

from __future__ import annotations

import hashlib
import json
from itertools import combinations
from pathlib import Path

import pytest
from PIL import Image

from editrl.cli import main
from editrl.io import DataError
from reward.eval import official_protocol as P
from reward.eval.loaders import (load_aurora_bench, load_aurora_pointwise, load_editreward_bench,
                                 load_editreward_bench_hub)
from reward.eval.score_files import bench_metrics, load_bench, write_scores

DATA = Path(__file__).resolve().parents[1] / "data" / "editreward_protocol"
GOLD = json.loads((DATA / "eval_protocol.json").read_text())
HUB = json.loads((DATA / "hub_bench_format.json").read_text())


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(path.name.encode() + path.parent.name.encode()).digest()
    Image.new("RGB", (4, 4), tuple(digest[:3])).save(path)  # a distinct image per path


@pytest.mark.parametrize("case", GOLD["primitives"]["metric_cases"], ids=lambda c: c["name"])
def test_metric_primitives_equal_the_official_functions(case):
    h, m = case["h"], case["m"]
    assert list(P.suff_stats(h, m, -1)) == case["suff_stats_eps_-1"]
    assert list(P.suff_stats(h, m, 0)) == case["suff_stats_eps_0"]
    assert P.accuracy_with_ties_paper(h, m) == case["calc_accuracy_with_ties(incremental,_used_by_main)"]
    assert list(P.accuracy_with_ties_search(h, m)) == case["calc_accuracy_with_ties_for_edit_reward_bench(acc,eps)"]
    if case["calc_accuracy_without_ties"] == "ZeroDivisionError":
        with pytest.raises(ZeroDivisionError):
            P.accuracy_without_ties(h, m)
    else:
        assert P.accuracy_without_ties(h, m) == case["calc_accuracy_without_ties"]


def test_paper_metric_never_tries_no_ties_while_editrl_does():
    from reward.eval.metrics import pairwise_accuracy_with_ties

    h, m = [1, -1, 1, -1, 1], [0.5, -0.2, 0.1, 0.3, 2.0]
    assert P.accuracy_with_ties_paper(h, m) == 0.6
    assert pairwise_accuracy_with_ties(m, h) == (0.8, 0.0) == P.accuracy_with_ties_search(h, m)


def test_ground_truth_parsing_equals_the_official_table():
    for case in GOLD["primitives"]["gt_parsing"]:
        ranking, n = case["ranking"], case["num_images"]
        want = case["get_gt_ranking"]
        got = P.gt_ranking(ranking, n)
        assert (list(got) if isinstance(got, tuple) else got) == want, (ranking, n)
        for key, label in case["pairwise"].items():
            i, j = map(int, key.split(","))
            assert P.pairwise_gt(ranking, i, j) == label, (ranking, n, key)


@pytest.fixture()
def local_bench(tmp_path: Path) -> Path:
    """The official local EditReward-Bench files of the fixture, with tiny images at their paths."""
    bench = tmp_path / "bench"
    bench.mkdir()
    for name, items in GOLD["edit_reward_bench_local_json"]["inputs_local_json_files"].items():
        for it in items:
            for rel in [it["path_src"], *it["paths_generated"]]:
                if rel:
                    _png(bench / rel)
        (bench / name).write_text(json.dumps(items))
    return bench


def test_editreward_bench_local_files_reproduce_the_official_summary_and_log(local_bench: Path):
    gold = GOLD["edit_reward_bench_local_json"]
    loaded = load_bench("editreward", local_bench)
    rejects = loaded.meta["rejects"]  # the item with an empty path_src is skipped, as the official script does
    assert len(rejects) == 1 and rejects[0].field == "path_src" and "EditReward_Bench_2pair.json[8]" in rejects[0].path
    scores = [gold["model_scores_by_path"][str(Path(u.edited).relative_to(local_bench))] for u in loaded.units]
    rows = write_scores(local_bench / "scores.jsonl", loaded, scores)
    official = bench_metrics("editreward", rows)["official"]
    assert official.pop("optimal_epsilon_2pair") == pytest.approx(0.1, abs=1e-6)
    assert official == gold["summary_accuracy_json"]
    assert official["overall"]["pairwise_accuracy"] == gold["returned_overall_pairwise_accuracy"]
    # per item: strict correctness, the float32 score and the predicted rank of the detailed log
    groups = [(r["official_ranking"], r["scores"]) for r in rows]
    items = P.editreward_bench(groups)["items"]
    for got, want in zip(items, gold["detailed_log_json"]):
        assert (got["file_name"], got["sample_index"]) == (want["file_name"], want["sample_index"])
        assert got["strict_accuracy_correct"] == want["strict_accuracy_correct"], want
        assert got["scores"] == [o["score"] for o in want["model_outputs"]]
        assert got["predicted_rank"] == [o["predicted_rank"] for o in want["model_outputs"]]


def test_quirks_of_strict_ranking_and_labels():
    # exactly equal scores: right for "B>A", wrong for "A>B"; a bare "A=B" is A>B, never a tie
    res = P.editreward_bench([("B>A", [0.7, 0.7]), ("A>B", [0.7, 0.7]), ("A=B", [0.3, 0.3]), ("A=B=Bad", [0.3, 0.3])])
    assert [it["strict_accuracy_correct"] for it in res["items"]] == [True, False, False, True]
    # 3-candidate groups: human ties drop out of the pairwise accuracy; a ranking with "=" is never strictly right
    res = P.editreward_bench([("A=B=Good", [1.0, 2.0]), ("A=B>C", [3.0, 2.0, 1.0])])["results"]
    assert res["3-Pair"]["pairwise_accuracy"] == 1.0 and res["3-Pair"]["strict_correct_count"] == 0
    # every 3-pair pair a human tie: the official run stops there; here the cell is None with the reason
    res = P.editreward_bench([("A=B=Good", [1.0, 1.0, 1.0])])["results"]
    assert res["3-Pair"]["pairwise_accuracy"] is None and "human tie" in res["3-Pair"]["pairwise_error"]


def test_pointwise_benches_reproduce_the_official_outputs(tmp_path: Path):
    gold = GOLD["pointwise"]
    hub = gold["imagenhub_v1"]
    models = [it["model"] for it in hub["input"]]
    pred = [hub["model_scores_by_path"][it["output_path"]] for it in hub["input"]]
    gt = [it["score"] for it in hub["input"]]
    assert P.imagenhub_v1(models, pred, gt) == hub["output_json"]
    prompts = [it["instruction"] for it in gold["imagenhub_v2"]["input"]]
    assert P.imagenhub_v2(prompts, pred, gt) == gold["imagenhub_v2"]["output_json"]
    aur = gold["aurora_pointwise"]
    assert P.aurora_pointwise([it["model"] for it in aur["input"]], [aur["model_scores_by_path"][it["gen"]] for it in aur["input"]],
                              [it["score"] for it in aur["input"]]) == aur["output_json"]
    # the same through the loaders and the score-file metrics
    for it in aur["input"]:
        _png(tmp_path / it["input"]), _png(tmp_path / it["gen"])
    (tmp_path / "aurora_pointwise.json").write_text(json.dumps(aur["input"]))
    loaded = load_bench("aurora_point", tmp_path / "aurora_pointwise.json", image_root=tmp_path)
    rows = write_scores(tmp_path / "s.jsonl", loaded,
                        [aur["model_scores_by_path"][str(Path(u.edited).relative_to(tmp_path))] for u in loaded.units])
    metrics = bench_metrics("aurora_point", rows)
    assert metrics["official"]["average"] == aur["return_value"]
    assert metrics["spearman"] != aur["return_value"]  # editrl averages through Fisher z
    with pytest.raises(DataError, match=r"aurora_pointwise\.json\[0\]: field 'path1'.*aurora_pointwise=PATH"):
        load_aurora_bench(tmp_path / "aurora_pointwise.json", image_root=tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps([{k: v for k, v in aur["input"][0].items() if k != "gen"}]))
    with pytest.raises(DataError, match=r"bad\.json\[0\]: field 'gen'"):
        load_aurora_pointwise(tmp_path / "bad.json", image_root=tmp_path)


def test_pairwise_main_reproduces_the_official_result():
    gold = GOLD["genai_edit_bench_via_main"]
    res = P.pair_bench(gold["h"], gold["m"])
    assert res["accuracy_with_ties_paper"] == gold["full_precision"]["calc_accuracy_with_ties"]
    assert res["accuracy_without_ties"] == gold["full_precision"]["calc_accuracy_without_ties"]
    for mode in ("pairwise_inference", "single_inference"):
        lines = gold[mode]["final_result_lines"]
        assert f"Accuracy with ties (paper metric): {res['accuracy_with_ties_paper']:.4f}" in lines
        assert f"Accuracy without ties (hard pref only): {res['accuracy_without_ties']:.4f}" in lines


# ---- hub rows -----------------------------------------------------------------------------------

def _hub_file(tmp_path: Path, rows: list[dict] | None = None) -> Path:
    """The hub fixture rows as JSONL, the "<PIL g2a/A>" images as PNG paths."""
    out = []
    for row in rows if rows is not None else HUB["hub_rows"]:
        row = dict(row)
        for key in ("source_image", "candidate_1", "candidate_2"):
            rel = row[key].removeprefix("<PIL ").removesuffix(">") + ".png"
            _png(tmp_path / rel)
            row[key] = rel if key != "candidate_2" else {"path": rel, "bytes": None}
        out.append(row)
    path = tmp_path / "hub.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    return path


def test_hub_rows_rebuild_the_groups(tmp_path: Path):
    items = load_editreward_bench(_hub_file(tmp_path))  # recognised by comparison_type
    view = HUB["derived_local_json_view (NOT official)"]
    assert [it.instruction for it in items] == [v["prompt"] for v in view]
    assert [it.K for it in items] == [len(v["paths_generated"]) for v in view]
    assert [it.ranking for it in items] == ["A>B", "B>A", "A=B", "C>A>B", "A>B>C", "B>D>A>C"]
    assert [it.official_ranking for it in items] == ["A>B", "B>A", "A=B=Good", "C>A>B", "A>B>C", "B>D>A>C"]
    assert [Path(c).stem for c in items[5].candidates] == ["A", "B", "C", "D"]
    assert Path(items[5].candidates[3]).parent.name == "g4a" and Path(items[5].source).stem == "source"
    # every hub comparison is what the rebuilt label says under the official pairwise reading
    by_instruction = {it.instruction: it for it in items}
    for row in HUB["hub_rows"]:
        it = by_instruction[row["instruction"]]
        a, b = (ord(x) - 65 for x in row["comparison_type"].split("vs"))
        want = {f"{chr(65 + a)}>{chr(65 + b)}": 1, f"{chr(65 + b)}>{chr(65 + a)}": -1}.get(row["ranking"], 0)
        assert P.pairwise_gt(it.official_ranking, a, b) == want, row["id"]
    # the official hub scripts' group count agrees
    assert sum(it.K == 3 for it in items) == HUB["official_outputs"]["3pair"]["total_groups"]
    assert sum(it.K == 4 for it in items) == HUB["official_outputs"]["4pair"]["total_groups"]


def test_hub_row_errors_name_file_line_and_field(tmp_path: Path):
    rows = HUB["hub_rows"]
    three = [r for r in rows if r["id"].startswith("g3a")]
    cases = [
        ([three[0], three[1]], 1, "comparison_type", "no row for BvsC"),
        ([three[0], three[1], {**three[2], "ranking": "B>C"}], 1, "ranking", "form no single ranking"),  # a cycle
        ([three[0], {**three[1], "comparison_type": "CvsA"}, three[2]], 2, "comparison_type", "letters X before Y"),
        ([three[0], {**three[1], "ranking": "A>B"}, three[2]], 2, "ranking", "outcome of A vs C"),
        ([three[0], three[1], three[2], three[2]], 4, "comparison_type", "BvsC appears twice"),
        ([three[0], {**three[1], "instruction": "other"}, three[2]], 2, "instruction", "first row"),
        ([three[0], {**three[1], "dataset": "5pair"}, three[2]], 2, "dataset", "2pair"),
        ([three[0], three[1], {**three[2], "candidate_2": "<PIL g3a/A>"}], 3, "candidate_2", "candidate C is"),
    ]
    for group, line, field, message in cases:
        path = _hub_file(tmp_path, group)
        with pytest.raises(DataError) as err:
            load_editreward_bench_hub(path)
        assert f"hub.jsonl:{line}: field {field!r}" in str(err.value) and message in str(err.value), str(err.value)
    # an export that writes every row's images apart: the same bytes under another path are the same image
    path = _hub_file(tmp_path, three)
    rows_copy = [json.loads(x) for x in path.read_text().splitlines()]
    (tmp_path / "copy_of_A.png").write_bytes((tmp_path / rows_copy[1]["candidate_1"]).read_bytes())
    rows_copy[1]["candidate_1"] = "copy_of_A.png"
    path.write_text("".join(json.dumps(x) + "\n" for x in rows_copy))
    assert load_editreward_bench_hub(path)[0].ranking == "C>A>B"
    # with a rejects list the bad group is skipped and the good ones kept
    path = _hub_file(tmp_path, [*rows[:3], three[0], three[1]])
    rejects: list[DataError] = []
    items = load_editreward_bench_hub(path, rejects=rejects)
    assert len(items) == 3 and len(rejects) == 1 and rejects[0].field == "comparison_type"


# ---- both tables from saved scores ----------------------------------------------------------------

def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_from_scores_reports_both_protocols(tmp_path: Path, capsys):
    scores = tmp_path / "run" / "scores" / "m"
    h, m = [1, -1, 1, -1, 1], [0.5, -0.2, 0.1, 0.3, 2.0]
    _write(scores / "genai.jsonl", [{"item": i, "scores": [d, 0.0], "label": lab} for i, (d, lab) in enumerate(zip(m, h))])
    gold = GOLD["edit_reward_bench_local_json"]
    er_rows = []
    for items in gold["inputs_local_json_files"].values():
        for it in items:
            if it["path_src"]:
                er_rows.append({"item": len(er_rows), "scores": [gold["model_scores_by_path"][p] for p in it["paths_generated"]],
                                "ranking": it["human_vote"]["ranking"].replace("=Good", "").replace("=Bad", "").replace("A<B", "B>A"),
                                "official_ranking": it["human_vote"]["ranking"]})
    _write(scores / "editreward.jsonl", er_rows)
    aur = GOLD["pointwise"]["aurora_pointwise"]
    _write(scores / "aurora_point.jsonl", [{"item": i, "scores": [aur["model_scores_by_path"][it["gen"]]], "model": it["model"],
                                            "human_scores": [it["score"]], "prompt": it["prompt"]} for i, it in enumerate(aur["input"])])
    hub = GOLD["pointwise"]["imagenhub_v1"]
    _write(scores / "imagenhub.jsonl", [{"item": i, "scores": [hub["model_scores_by_path"][it["output_path"]]], "model": it["model"],
                                         "human_scores": [it["score"]], "prompt": it["instruction"]} for i, it in enumerate(hub["input"])])
    assert main(["reward", "eval", "--from-scores", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    assert "editrl metrics" in printed and "official EditReward protocol" in printed and "ER-2 strict" in printed
    table = json.loads((tmp_path / "run" / "table2.json").read_text())
    ours, official = table["rows"]["m"], table["official_rows"]["m"]
    assert ours["genai_ties"] == 0.8 and official["genai_paper"] == 0.6 and official["genai_noties"] == 0.8
    summary = gold["summary_accuracy_json"]
    assert official["er2_pairwise"] == summary["2-Pair"]["pairwise_accuracy"]
    assert official["er3_strict"] == summary["3-Pair"]["strict_ranking_accuracy"]
    assert official["er_pairwise"] == summary["overall"]["pairwise_accuracy"]
    assert official["er_strict"] == summary["overall"]["strict_ranking_accuracy"]
    assert official["aurora_point"] == aur["return_value"] and official["imagenhub"] == hub["return_value"]
    assert table["details"]["m"]["imagenhub"]["official"]["v2"] == GOLD["pointwise"]["imagenhub_v2"]["output_json"]
    assert ours["editreward_k2"] is not None and ours["aurora_point"] is not None
    # a score file from before official_ranking: the two-way tie "A=B" is read as the official tie label
    for r in er_rows:
        del r["official_ranking"]
    _write(scores / "editreward.jsonl", er_rows)
    assert main(["reward", "eval", "--from-scores", str(tmp_path / "run"), "--out", str(tmp_path / "again"),
                 "--protocol", "official"]) == 0
    printed = capsys.readouterr().out
    assert "official EditReward protocol" in printed and "editrl metrics" not in printed
    again = json.loads((tmp_path / "again" / "table2.json").read_text())
    assert again["official_rows"]["m"]["er2_strict"] == summary["2-Pair"]["strict_ranking_accuracy"]
    assert again["rows"] == table["rows"]


def test_every_pair_label_matches_combinations_order():
    """The official pairs are combinations(range(K), 2) in order; the bench function uses the same order."""
    res = P.editreward_bench([("B>D>A>C", [0.4, 2.0, 0.1, 1.1])])
    assert res["results"]["4-Pair"]["pair_count"] == len(list(combinations(range(4), 2)))
    assert res["items"][0]["strict_accuracy_correct"] and res["results"]["4-Pair"]["pairwise_accuracy"] == 1.0
