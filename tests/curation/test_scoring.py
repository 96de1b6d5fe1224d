"""Streaming scoring: rejects with reasons, crash + resume scores every row exactly once, outputs.

The reward client here is a small deterministic scorer (mu from the edited image's brightness) so the
machinery is tested on its own; tests/curation/test_cli.py runs the real reward model.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from curation.run import run_curation
from curation.config import CurateConfig, SelectionConfig
from curation.scoring import REJECTS, SCORES, repair_jsonl, score_dataset
from editrl.dimensions import DIMENSIONS as DIMS
from editrl.io import DataError, read_jsonl


class BrightnessScorer:
    """Deterministic reward client: mu_IF = 1 + 3 * mean brightness, mu_VQ = 4 - 1.5 * red share; can crash."""

    def __init__(self, crash_after_calls: int | None = None):
        self.crash_after_calls = crash_after_calls
        self.calls = 0
        self.edits = 0

    def score_groups(self, groups):
        from reward.serve.scorer import ScoredEdit

        if self.crash_after_calls is not None and self.calls >= self.crash_after_calls:
            raise KeyboardInterrupt("simulated crash")
        self.calls += 1
        out = []
        for _source, _instruction, edited in groups:
            scored = []
            for im in edited:
                a = np.asarray(im, dtype=np.float64) / 255.0
                mu = {"instruction_following": 1 + 3 * a.mean(), "visual_quality": 4 - 1.5 * a[..., 0].mean()}
                sigma = {d: 0.1 for d in DIMS}
                scored.append(ScoredEdit(mu, sigma, score=sum(mu.values()) / 2, score_sigma=0.0707))
            self.edits += len(scored)
            out.append(scored)
        return out


def _png(path: Path, value: int) -> str:
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)
    return path.name


def write_dataset(root: Path, n_good: int = 23) -> dict[str, int]:
    """A manifest of good rows with five kinds of bad row and a blank line mixed in; returns bad line -> kind."""
    root.mkdir(parents=True, exist_ok=True)
    lines, bad = [], {}
    src = _png(root / "src.png", 40)
    (root / "broken.png").write_bytes(b"not a png at all")
    for i in range(n_good):
        lines.append(json.dumps({"id": f"e{i}", "source": src, "instruction": "make it brighter",
                                 "target": _png(root / f"t{i}.png", 5 + 10 * i)}))
        if i == 4:
            bad[len(lines) + 1] = "image not found"
            lines.append(json.dumps({"id": "gone", "source": src, "instruction": "x", "target": "nope.png"}))
        if i == 9:
            bad[len(lines) + 1] = "cannot decode"
            lines.append(json.dumps({"id": "broken", "source": src, "instruction": "x", "target": "broken.png"}))
        if i == 12:
            bad[len(lines) + 1] = "empty instruction"
            lines.append(json.dumps({"id": "empty", "source": src, "instruction": "   ", "target": "t0.png"}))
            lines.append("")  # blank lines are not rows
        if i == 15:
            bad[len(lines) + 1] = "malformed JSON"
            lines.append('{"id": "half", "source": ')
        if i == 18:
            bad[len(lines) + 1] = "missing required field"
            lines.append(json.dumps({"id": "noinstr", "source": src, "target": "t0.png"}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return bad


def _cfg(data: Path, out: Path, **kw) -> CurateConfig:
    return CurateConfig(input=str(data / "manifest.jsonl"), out=str(out), progress=False, **kw)


def _lines_once(out: Path, n_rows: int) -> Counter:
    lines = Counter(r["line"] for r in read_jsonl(out / SCORES)) + Counter(r["line"] for r in read_jsonl(out / REJECTS))
    assert all(c == 1 for c in lines.values()), "a row was written twice"
    assert len(lines) == n_rows
    return lines


def test_every_row_is_scored_or_rejected_with_a_reason(tmp_path):
    bad = write_dataset(tmp_path / "data")
    stats = score_dataset(_cfg(tmp_path / "data", tmp_path / "out", batch_size=4), BrightnessScorer())
    assert stats["rows"] == 28 and stats["scored_now"] == 23 and stats["rejected_now"] == 5
    _lines_once(tmp_path / "out", 28)
    rejects = {r["line"]: r for r in read_jsonl(tmp_path / "out" / REJECTS)}
    assert sorted(rejects) == sorted(bad)
    for line, kind in bad.items():
        assert kind in rejects[line]["reason"], rejects[line]
        assert rejects[line]["file"].endswith("manifest.jsonl")
    assert rejects[min(bad)]["field"] == "target" and rejects[min(bad)]["id"] == "gone"
    assert [r["field"] for r in rejects.values() if "empty" in r["reason"]] == ["instruction"]
    scores = read_jsonl(tmp_path / "out" / SCORES)
    assert [r["line"] for r in scores] == sorted(r["line"] for r in scores)
    by_id = {r["id"]: r["reward"] for r in scores}
    assert by_id["e3"]["mu"]["instruction_following"] == pytest.approx(1 + 3 * 35 / 255)
    assert by_id["e0"]["score"] < by_id["e22"]["score"]


def test_crash_midway_then_resume_scores_each_row_exactly_once(tmp_path):
    write_dataset(tmp_path / "data")
    cfg = _cfg(tmp_path / "data", tmp_path / "out", batch_size=4)
    crashing = BrightnessScorer(crash_after_calls=3)
    with pytest.raises(KeyboardInterrupt):
        score_dataset(cfg, crashing)
    partial = read_jsonl(tmp_path / "out" / SCORES)
    assert len(partial) == crashing.edits == 12
    # a kill in the middle of a write leaves half a line behind
    with (tmp_path / "out" / SCORES).open("a") as f:
        f.write('{"id": "e99", "line": 40, "reward": {"mu"')
    resumed = BrightnessScorer()
    stats = score_dataset(cfg, resumed)
    assert stats["repaired_bytes"] > 0
    assert resumed.edits == 23 - 12, "rows scored before the crash were scored again"
    lines = _lines_once(tmp_path / "out", 28)
    assert stats["already_done"] + stats["scored_now"] + stats["rejected_now"] == len(lines)
    # a finished run resumes to a no-op
    again = BrightnessScorer()
    stats = score_dataset(cfg, again)
    assert again.calls == 0 and stats["already_done"] == 28
    _lines_once(tmp_path / "out", 28)


def test_outputs_of_another_dataset_are_refused(tmp_path):
    write_dataset(tmp_path / "data")
    score_dataset(_cfg(tmp_path / "data", tmp_path / "out"), BrightnessScorer())
    small = tmp_path / "small"
    write_dataset(small, n_good=3)
    with pytest.raises(DataError, match="another dataset"):
        score_dataset(_cfg(small, tmp_path / "out"), BrightnessScorer())


def test_repair_keeps_complete_files_and_cuts_partial_lines(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"line": 1}\n{"line": 2}\n')
    assert repair_jsonl(p) == 0 and p.read_text() == '{"line": 1}\n{"line": 2}\n'
    p.write_text('{"line": 1}\n{"line": 2}\n{"li')
    assert repair_jsonl(p) == 4 and p.read_text() == '{"line": 1}\n{"line": 2}\n'
    p.write_text('{"li')
    assert repair_jsonl(p) == 4 and p.read_text() == ""


def test_folder_layout_imagefolder_metadata(tmp_path):
    root = tmp_path / "hf"
    root.mkdir()
    rows = [{"file_name": f"ex{i}", "input_image": _png(root / f"in{i}.png", 100),
             "edit_prompt": "darken it", "edited_image": _png(root / f"out{i}.png", 20 * i)} for i in range(5)]
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = CurateConfig(input=str(root), input_format="folder", out=str(tmp_path / "out"), progress=False,
                       selection=SelectionConfig(top_k=2))
    summary = run_curation(cfg, client=BrightnessScorer())
    assert (summary["scored"], summary["rejected"], summary["kept"]) == (5, 0, 2)
    kept = read_jsonl(tmp_path / "out" / "kept.jsonl")
    assert [r["file_name"] for r in kept] == ["ex3", "ex4"]  # brightest edits score highest
    assert (tmp_path / "out" / kept[0]["edited_image"]).is_file()


def test_run_curation_writes_kept_manifest_summary_and_plots(tmp_path):
    write_dataset(tmp_path / "data")
    cfg = _cfg(tmp_path / "data", tmp_path / "out", batch_size=5,
               selection=SelectionConfig(top_fraction=0.5, min_dims={"visual_quality": 3.0}))
    summary = run_curation(cfg, client=BrightnessScorer())
    out = tmp_path / "out"
    assert (summary["total"], summary["scored"], summary["rejected"]) == (28, 23, 5)
    kept = read_jsonl(out / "kept.jsonl")
    every = read_jsonl(out / "all_scored.jsonl")
    assert len(every) == 23 and sum(r["kept"] for r in every) == len(kept) == summary["kept"]
    assert all(r["reward"]["mu"]["visual_quality"] >= 3.0 for r in kept)
    assert 0 < len(kept) <= 12  # round(0.5 * 23) = 12, fewer if the minimum bites
    lowest_kept = min(r["reward"]["rank_key"] for r in kept)
    assert all(r["reward"]["rank_key"] <= lowest_kept for r in every if not r["kept"]
               and r["reward"]["mu"]["visual_quality"] >= 3.0)
    for r in kept:  # kept.jsonl is a usable manifest from where it lies
        assert (out / r["source"]).is_file() and (out / r["target"]).is_file()
        assert set(r) >= {"id", "source", "instruction", "target", "reward"}
    for name in ("histograms.png", "extremes.png", "summary.json", "config.yaml"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "summary.json").read_text())["kept"] == len(kept)


class PickyScorer(BrightnessScorer):
    """Fails edits darker than 30 (as a real scorer fails an item it cannot process), scores the rest."""

    def score_groups(self, groups):
        from reward.serve.scorer import ScoredEdit

        out = super().score_groups(groups)
        for (_s, _i, edited), scored in zip(groups, out):
            for j, im in enumerate(edited):
                if np.asarray(im).mean() < 30:
                    scored[j] = ScoredEdit.failed(DIMS, "edited: too dark to score")
        return out


def test_reward_model_errors_become_rejects(tmp_path):
    write_dataset(tmp_path / "data")
    stats = score_dataset(_cfg(tmp_path / "data", tmp_path / "out", batch_size=7), PickyScorer())
    rejects = [r for r in read_jsonl(tmp_path / "out" / REJECTS) if r["reason"].startswith("reward model")]
    assert sorted(r["id"] for r in rejects) == ["e0", "e1", "e2"]  # brightness 5, 15, 25
    assert all("too dark" in r["reason"] for r in rejects)
    assert stats["scored_now"] == 20 and stats["rejected_now"] == 8
    _lines_once(tmp_path / "out", 28)
