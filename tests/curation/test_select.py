"""Selection rules on hand-worked score rows."""

from __future__ import annotations

import pytest

from curation.config import SelectionConfig
from curation.select import Cut, find_cut, is_kept, keep_count, passes_filters, ranking_key, select_rows, select_stream
from editrl.config import ConfigError


def row(line: int, score: float, sigma: float = 0.0, if_mu: float = 3.0, vq_mu: float = 3.0) -> dict:
    return {"id": f"r{line}", "line": line,
            "reward": {"mu": {"instruction_following": if_mu, "visual_quality": vq_mu},
                       "sigma": {"instruction_following": sigma, "visual_quality": sigma},
                       "score": score, "score_sigma": sigma}}


#            line score sigma  if   vq
ROWS = [row(1, 3.0, 0.1, 3.5, 2.5),
        row(2, 1.5, 0.1, 1.0, 2.0),
        row(3, 3.5, 1.0, 3.5, 3.5),   # best mean, very uncertain
        row(4, 2.0, 0.2, 2.0, 2.0),
        row(5, 3.2, 0.1, 3.9, 2.4),   # high average, poor visual quality
        row(6, 3.0, 0.1, 3.0, 3.0)]   # same key as line 1: line 1 wins the tie


def ids(rows: list[dict]) -> list[str]:
    return [r["id"] for r in rows]


def test_ranking_key_subtracts_k_sigmas():
    assert ranking_key(ROWS[2]) == 3.5
    assert ranking_key(ROWS[2], 1.0) == pytest.approx(2.5)
    assert ranking_key(ROWS[0], 2.0) == pytest.approx(2.8)


def test_top_k_keeps_best_in_original_order_and_breaks_ties_by_line():
    # keys: 3.5 (3), 3.2 (5), 3.0 (1), 3.0 (6), 2.0 (4), 1.5 (2)
    assert ids(select_rows(ROWS, SelectionConfig(top_k=2))) == ["r3", "r5"]
    assert ids(select_rows(ROWS, SelectionConfig(top_k=3))) == ["r1", "r3", "r5"]  # r1 beats r6 on the tie
    assert ids(select_rows(ROWS, SelectionConfig(top_k=4))) == ["r1", "r3", "r5", "r6"]
    assert ids(select_rows(ROWS, SelectionConfig(top_k=0))) == []
    assert ids(select_rows(ROWS, SelectionConfig(top_k=100))) == ids(ROWS)


def test_top_fraction_rounds_half_up_of_all_scored_rows():
    assert keep_count(SelectionConfig(top_fraction=0.5), 6) == 3
    assert keep_count(SelectionConfig(top_fraction=0.25), 6) == 2  # 1.5 -> 2
    assert keep_count(SelectionConfig(top_fraction=0.2), 6) == 1   # 1.2 -> 1
    assert keep_count(SelectionConfig(), 6) is None
    assert ids(select_rows(ROWS, SelectionConfig(top_fraction=0.5))) == ["r1", "r3", "r5"]


def test_threshold_is_inclusive():
    assert ids(select_rows(ROWS, SelectionConfig(threshold=3.0))) == ["r1", "r3", "r5", "r6"]
    assert ids(select_rows(ROWS, SelectionConfig(threshold=3.01))) == ["r3", "r5"]


def test_per_dimension_minimum_drops_high_average_with_poor_quality():
    rule = SelectionConfig(min_dims={"visual_quality": 2.5})
    assert ids(select_rows(ROWS, rule)) == ["r1", "r3", "r6"]  # r5 (vq 2.4) goes despite its 3.2 average
    assert not passes_filters(ROWS[4], rule) and passes_filters(ROWS[0], rule)
    both = SelectionConfig(min_dims={"visual_quality": 2.5, "instruction_following": 3.2})
    assert ids(select_rows(ROWS, both)) == ["r1", "r3"]


def test_filters_apply_before_the_count_limit():
    # without the filter top-2 is r3, r5; with vq >= 2.5 r5 is gone and the next best (r1) moves up
    assert ids(select_rows(ROWS, SelectionConfig(top_k=2, min_dims={"visual_quality": 2.5}))) == ["r1", "r3"]
    # a fraction counts all scored rows (6), not only those passing the filters
    assert ids(select_rows(ROWS, SelectionConfig(top_fraction=0.5, threshold=3.1))) == ["r3", "r5"]


def test_uncertainty_aware_ranking_demotes_uncertain_rows():
    # k = 1: keys 2.9 (1), 1.4 (2), 2.5 (3), 1.8 (4), 3.1 (5), 2.9 (6)
    assert ids(select_rows(ROWS, SelectionConfig(top_k=2, uncertainty_k=1.0))) == ["r1", "r5"]
    assert ids(select_rows(ROWS, SelectionConfig(top_k=2, uncertainty_k=0.0))) == ["r3", "r5"]
    assert ids(select_rows(ROWS, SelectionConfig(threshold=2.6, uncertainty_k=1.0))) == ["r1", "r5", "r6"]


def test_cut_and_stream_agree_with_in_memory_selection():
    rule = SelectionConfig(top_k=3)
    cut = find_cut(iter(ROWS), rule, 3)
    assert cut == Cut(3.0, 1)
    assert [is_kept(r, rule, cut) for r in ROWS] == [True, False, True, False, True, False]
    cut2, n = select_stream(lambda: iter(ROWS), SelectionConfig(top_fraction=0.5))
    assert n == 6 and cut2 == cut
    assert find_cut(iter(ROWS), SelectionConfig(threshold=3.0), None) is None


def test_bad_rules_are_config_errors():
    with pytest.raises(ConfigError, match="not both"):
        SelectionConfig(top_k=2, top_fraction=0.5)
    with pytest.raises(ConfigError, match="top_fraction"):
        SelectionConfig(top_fraction=1.5)
    with pytest.raises(ConfigError, match="unknown dimension 'sharpness'"):
        select_rows(ROWS, SelectionConfig(min_dims={"sharpness": 2.0}))
