"""On-policy preference data: the shipped tiny editor's samples, oracle-labelled, paired, readable by the trainer."""

from __future__ import annotations

import json

import pytest

from editworld.config import EditorSampleConfig
from rollout.editor_samples import generate_editor_samples
from editworld.oracle import oracle_scores
from editworld.tasks import HELD_OUT_SEED, Task
from reward.train.data import load_pairs


@pytest.fixture(scope="module")
def editor():
    from rollout.registry import load_editor

    return load_editor("editworld-tiny")


def test_editor_samples_are_oracle_labelled_pairs_the_trainer_reads(tmp_path, editor):
    cfg = EditorSampleConfig(tasks=3, per_noise=2, noise_levels=(0.0, 0.7), num_steps=4, annotator_noise=0.0,
                             tie_margin=0.05)
    summary = generate_editor_samples(tmp_path, editor, cfg, editor_name="tiny", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert summary["candidates"] == len(rows) == 3 * 2 * 2
    assert summary["train_pairs"] == 3 * 6  # C(4, 2) pairs in each of the 3 groups
    row = rows[0]
    from PIL import Image

    # with a noiseless annotator the rating is the oracle's score of the saved image
    image = Image.open(tmp_path / row["edited"]).convert("RGB")
    oracle = oracle_scores(Task.from_dict(row["task"]), image)
    for dim, value in oracle.items():
        assert row["human_scores"][dim] == [pytest.approx(value, abs=1e-6)]
    assert {r["editor"]["noise_level"] for r in rows} == {0.0, 0.7}
    pairs = load_pairs(tmp_path)
    assert len(pairs) == summary["train_pairs"]
    for p in pairs:  # preferred has the higher overall rating; ties are the close calls
        diff = sum(p.preferred_scores) / 2 - sum(p.rejected_scores) / 2
        assert diff >= 0 and p.tie == (diff < cfg.tie_margin)


def test_editor_samples_refuse_the_held_out_seed(tmp_path, editor):
    with pytest.raises(ValueError, match="held-out"):
        generate_editor_samples(tmp_path, editor, EditorSampleConfig(tasks=1, seed=HELD_OUT_SEED), progress=False)


def test_editor_samples_can_sample_as_the_rl_presets_do(tmp_path, editor):
    """``sde_window``: only a window of steps is stochastic, like the RL sampler; the rows say so and the images are
    not the every-step-SDE ones (same seed)."""
    import numpy as np
    from PIL import Image

    def run(window: int):
        cfg = EditorSampleConfig(tasks=2, per_noise=2, noise_levels=(0.7,), num_steps=4, sde_window=window)
        generate_editor_samples(tmp_path / f"w{window}", editor, cfg, editor_name="tiny", progress=False)
        rows = [json.loads(line) for line in (tmp_path / f"w{window}" / "manifest.jsonl").read_text().splitlines()]
        return rows, [np.asarray(Image.open(tmp_path / f"w{window}" / r["edited"])) for r in rows]

    rows, images = run(2)
    assert {r["editor"]["name"] for r in rows} == {"tiny@noise0.7-window2"}
    assert {r["editor"]["sde_window"] for r in rows} == {2}
    _, full = run(0)
    assert any(not np.array_equal(a, b) for a, b in zip(images, full))


def test_editor_samples_can_put_several_editors_in_one_group(tmp_path, editor):
    """Two editors' samples of each task form one group: every pair within it, across the editors too."""
    cfg = EditorSampleConfig(tasks=2, per_noise=2, noise_levels=(0.7,), num_steps=2)
    summary = generate_editor_samples(tmp_path, editor, cfg, editor_name="before", progress=False,
                                      more_editors={"after": editor})
    rows = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert summary["candidates"] == 2 * 2 * 2 and summary["train_pairs"] == 2 * 6  # C(4, 2) per group
    names = [r["editor"]["name"] for r in rows if r["group_id"] == rows[0]["group_id"]]
    assert names == ["before@noise0.7"] * 2 + ["after@noise0.7"] * 2
