"""Pair loading (editworld pairs.jsonl and the official EditReward-Data JSON), ties, splits, bad input."""

import json
from pathlib import Path

import pytest
from PIL import Image

from editrl.dimensions import DIMENSIONS
from editrl.io import DataError
from reward.train.data import (PairDataset, epoch_order, load_pairs, split_by_group, subsample, training_samples)

IF, VQ = DIMENSIONS


def _img(path: Path, colour) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path.name


def _editworld_rows(root: Path) -> list[dict]:
    _img(root / "src.png", (10, 10, 10)), _img(root / "a.png", (200, 0, 0)), _img(root / "b.png", (0, 200, 0))
    base = {"group_id": 0, "source": "src.png", "instruction": "make the square red"}
    return [
        {**base, "preferred": "a.png", "rejected": "b.png", "preferred_scores": {IF: 4, VQ: 3},
         "rejected_scores": {IF: 2, VQ: 3}, "tie": False, "disentangle": False},
        # tie overall, dimensions disagree -> two samples when disentangling
        {**base, "group_id": 1, "preferred": "b.png", "rejected": "a.png", "preferred_scores": {IF: 4, VQ: 2},
         "rejected_scores": {IF: 2, VQ: 4}, "tie": True, "disentangle": True},
        # plain tie -> dropped
        {**base, "group_id": 2, "preferred": "a.png", "rejected": "b.png", "preferred_scores": {IF: 3, VQ: 3},
         "rejected_scores": {IF: 3, VQ: 3}, "tie": True, "disentangle": False},
    ]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_editworld_pairs_and_tie_disentanglement(tmp_path):
    _write_jsonl(tmp_path / "pairs.jsonl", _editworld_rows(tmp_path))
    pairs = load_pairs(tmp_path)  # a dataset folder resolves to its pairs.jsonl
    assert len(pairs) == 3
    assert pairs[0].preferred == str(tmp_path / "a.png") and pairs[0].preferred_scores == (4.0, 3.0)
    assert [p.tie for p in pairs] == [False, True, True]
    assert [p.disentanglable for p in pairs] == [False, True, False]

    on = training_samples(pairs, tie_disentangle=True)
    assert len(on) == 3
    assert (on[1].preferred, on[1].rejected) == (on[2].rejected, on[2].preferred)  # opposite labels
    assert on[2].preferred_scores == (2.0, 4.0)
    assert len(training_samples(pairs, tie_disentangle=False)) == 1

    item = PairDataset(on)[0]
    assert item["preferred"].getpixel((0, 0)) == (200, 0, 0) and item["instruction"] == "make the square red"


def test_official_json_layout(tmp_path):
    for name, c in [("g/source.png", (1, 2, 3)), ("g/m1.png", (9, 9, 9)), ("g/m2.png", (5, 5, 5))]:
        _img(tmp_path / "imgs" / name, c)
    rows = [
        {"prompt": "Make the sandwich a hot dog.", "choice_dist": None, "path_src": "g/source.png",
         "path1": "g/m1.png", "path2": "g/m2.png", "model1": "a", "model2": "b",
         "model1_dim1_score": 4, "model1_dim2_score": 3, "model1_overall_score": 7,
         "model2_dim1_score": 3, "model2_dim2_score": 3, "model2_overall_score": 6, "tie_case": False},
        {"prompt": "Remove the cat", "path_src": "g/source.png", "path1": "g/m1.png", "path2": "g/m2.png",
         "model1_dim1_score": 4, "model1_dim2_score": 2, "model2_dim1_score": 2, "model2_dim2_score": 4},
    ]
    (tmp_path / "train.json").write_text(json.dumps(rows))
    pairs = load_pairs(tmp_path / "train.json", image_root=tmp_path / "imgs")
    assert pairs[0].preferred == str(tmp_path / "imgs" / "g/m1.png")  # path1 is the preferred image
    assert pairs[0].preferred_scores == (4.0, 3.0) and pairs[0].rejected_scores == (3.0, 3.0)
    assert not pairs[0].tie
    assert pairs[1].tie and pairs[1].disentanglable  # tie inferred from equal sums when tie_case is absent
    assert PairDataset(pairs)[1]["source"].getpixel((0, 0)) == (1, 2, 3)


@pytest.mark.parametrize("mutate, field, line", [
    (lambda r: r.pop("rejected"), "rejected", 2),
    (lambda r: r.update(instruction="  "), "instruction", 2),
    (lambda r: r.update(preferred_scores={IF: 3}), "preferred_scores", 2),
    (lambda r: r.update(tie="yes"), "tie", 2),
])
def test_bad_editworld_rows_name_line_and_field(tmp_path, mutate, field, line):
    rows = _editworld_rows(tmp_path)
    mutate(rows[1])
    path = _write_jsonl(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(DataError) as err:
        load_pairs(path)
    assert err.value.field == field and err.value.line == line and str(path) in str(err.value)


def test_bad_official_rows_and_images(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps([{"prompt": "x", "path_src": "s.png", "path1": "a.png", "path2": "b.png",
                                 "model1_dim1_score": 3, "model1_dim2_score": "high",
                                 "model2_dim1_score": 3, "model2_dim2_score": 3}]))
    with pytest.raises(DataError, match=r"train\.json\[0\].*model1_dim2_score"):
        load_pairs(path)
    path.write_text('{"prompt": "x"}')
    with pytest.raises(DataError, match="JSON list"):
        load_pairs(path)
    path.write_text("[{,]")
    with pytest.raises(DataError, match="malformed JSON"):
        load_pairs(path)

    rows = _editworld_rows(tmp_path)
    (tmp_path / "b.png").write_bytes(b"not a png")
    pairs = load_pairs(_write_jsonl(tmp_path / "pairs.jsonl", rows))
    with pytest.raises(DataError) as err:
        PairDataset(pairs)[0]
    assert err.value.line == 1 and err.value.field == "rejected" and "decode" in str(err.value)
    with pytest.raises(DataError, match="not found"):
        load_pairs(tmp_path / "missing")


def test_split_subsample_and_order_are_deterministic(tmp_path):
    rows = []
    _editworld_rows(tmp_path)
    for g in range(200):
        rows.append({"group_id": g, "source": "src.png", "instruction": f"edit {g}", "preferred": "a.png",
                     "rejected": "b.png", "preferred_scores": {IF: 4, VQ: 4}, "rejected_scores": {IF: 1, VQ: 1}})
        rows.append({**rows[-1], "preferred": "b.png"})
    pairs = load_pairs(_write_jsonl(tmp_path / "pairs.jsonl", rows))
    train, val = split_by_group(pairs, 0.25, seed=3)
    assert not {p.group for p in train} & {p.group for p in val}  # no group is cut
    assert 0.15 < len(val) / len(pairs) < 0.35
    assert split_by_group(pairs, 0.25, seed=3) == (train, val)
    assert len(subsample(pairs, 50, seed=0)) == 50 and subsample(pairs, 50, 0) == subsample(pairs, 50, 0)
    assert epoch_order(100, 0, 1) == epoch_order(100, 0, 1) != epoch_order(100, 0, 2)
    assert sorted(epoch_order(100, 5, 0)) == list(range(100))


def test_extra_train_sources_are_trained_on_beside_train(tmp_path):
    from editrl.config import load_config
    from reward.train.config import RewardTrainConfig
    from reward.train.trainer import prepare_pairs

    world, extra = tmp_path / "world", tmp_path / "extra"
    world.mkdir(), extra.mkdir()
    _write_jsonl(world / "pairs.jsonl", _editworld_rows(world))
    _write_jsonl(extra / "pairs.jsonl", [{**r, "group_id": f"p{r['group_id']}"} for r in _editworld_rows(extra)])
    overrides = [f"data.train={world}", "data.val_fraction=0.0"]
    alone, _ = prepare_pairs(load_config(RewardTrainConfig, None, overrides))
    both, _ = prepare_pairs(load_config(RewardTrainConfig, None, overrides + [f"data.extra_train=[{extra}]"]))
    assert len(alone) == 3 and len(both) == 6
    assert {p.preferred for p in both} - {p.preferred for p in alone} == {str(extra / "a.png"), str(extra / "b.png")}
