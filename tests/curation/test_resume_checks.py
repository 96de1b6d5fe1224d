"""Resume refuses changed inputs (naming what changed), --restart starts over, outputs appear atomically, and a row
that makes the reward client raise is isolated as a reject while its batch is scored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curation.config import CurateConfig, SelectionConfig
from curation.run import run_curation
from curation.scoring import REJECTS, SCORES, score_dataset
from editrl.config import ConfigError
from editrl.io import InputLimits, read_jsonl
from tests.curation.test_scoring import BrightnessScorer, write_dataset


def _cfg(data: Path, out: Path, **kw) -> CurateConfig:
    kw.setdefault("batch_size", 4)
    return CurateConfig(input=str(data / "manifest.jsonl"), out=str(out), progress=False, grid_k=0, **kw)


@pytest.fixture(autouse=True)
def no_histograms(monkeypatch):
    """The figures are tested in test_scoring.py; here they only cost time."""
    import curation.report

    monkeypatch.setattr(curation.report, "plot_histograms", lambda *args, **kwargs: None)


def test_changed_manifest_is_refused_appended_rows_are_scored_restart_starts_over(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    write_dataset(data)
    run_curation(_cfg(data, out), client=BrightnessScorer())
    manifest = data / "manifest.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    # an edit in the middle (the same number of rows: the line check alone would not notice)
    manifest.write_text("".join(lines[:3] + [lines[5]] + lines[4:5] + [lines[3]] + lines[6:]))
    with pytest.raises(ConfigError, match=r"manifest .*manifest.jsonl changed since these scores were written "
                                          r"\(sha256 .* -> .*\).*--restart"):
        run_curation(_cfg(data, out), client=BrightnessScorer())
    with pytest.raises(ConfigError, match="the input limits changed"):
        run_curation(_cfg(data, out, limits=InputLimits(max_image_pixels=10 ** 6)), client=BrightnessScorer())
    scorer = BrightnessScorer()
    summary = run_curation(_cfg(data, out), client=scorer, restart=True)
    assert scorer.edits == 23 and summary["last_call"]["already_done"] == 0
    # rows appended at the end are fine: only they are scored
    manifest.write_text(manifest.read_text() + lines[0].replace('"e0"', '"e-new"'))
    scorer = BrightnessScorer()
    summary = run_curation(_cfg(data, out), client=scorer)
    assert scorer.edits == 1 and summary["scored"] == 24
    assert any("manifest grew" in n for n in summary["notes"])
    # a new selection is not a new input: re-selected from the stored scores, with a note saying so
    summary = run_curation(_cfg(data, out, selection=SelectionConfig(top_k=3)), client=BrightnessScorer())
    assert summary["kept"] == 3 and any("top_k None -> 3" in n for n in summary["notes"])


def test_a_crash_in_the_report_pass_leaves_the_previous_outputs_whole(tmp_path, monkeypatch):
    data, out = tmp_path / "data", tmp_path / "out"
    write_dataset(data)
    run_curation(_cfg(data, out, selection=SelectionConfig(top_k=5)), client=BrightnessScorer())
    before = (out / "kept.jsonl").read_bytes()
    import curation.report as report

    real = report.output_row
    calls = []

    def dies_midway(*args, **kwargs):
        calls.append(1)
        if len(calls) > 10:
            raise KeyboardInterrupt("killed while writing kept.jsonl")
        return real(*args, **kwargs)

    monkeypatch.setattr(report, "output_row", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        run_curation(_cfg(data, out, selection=SelectionConfig(top_k=20)), client=BrightnessScorer())
    assert (out / "kept.jsonl").read_bytes() == before and len(read_jsonl(out / "kept.jsonl")) == 5


class FailsOnDarkEdits(BrightnessScorer):
    """Raises (as a processor does on an input it cannot take) when a batch holds an edit darker than 30."""

    def score_groups(self, groups):
        import numpy as np

        for _, _, edited in groups:
            if any(np.asarray(im).mean() < 30 for im in edited):
                raise ValueError("absolute aspect ratio must be smaller than 200")
        return super().score_groups(groups)


def test_a_row_that_makes_the_client_raise_is_a_reject_and_its_batch_is_scored(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    write_dataset(data)  # edits e0, e1, e2 have brightness 5, 15, 25
    stats = score_dataset(_cfg(data, out, batch_size=8), FailsOnDarkEdits())
    assert (stats["scored_now"], stats["rejected_now"]) == (20, 8)
    rejects = {r["id"]: r for r in read_jsonl(out / REJECTS)}
    for row_id in ("e0", "e1", "e2"):
        assert rejects[row_id]["field"] == "<reward>" and "aspect ratio" in rejects[row_id]["reason"]
    scored = {r["id"] for r in read_jsonl(out / SCORES)}
    assert {"e3", "e4", "e22"} <= scored


class DeviceLost(BrightnessScorer):
    """Works for ``good_calls`` calls, then every call raises."""

    def __init__(self, good_calls: int = 0):
        super().__init__()
        self.good_calls = good_calls

    def score_groups(self, groups):
        if self.calls >= self.good_calls:
            raise RuntimeError("CUDA error: device lost")
        return super().score_groups(groups)


def test_an_error_every_row_shares_stops_the_run_instead_of_rejecting_everything(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    write_dataset(data)
    with pytest.raises(RuntimeError, match="device lost"):
        score_dataset(_cfg(data, out, batch_size=8), DeviceLost())
    assert not read_jsonl(out / SCORES) and all("reward" not in r["reason"] for r in read_jsonl(out / REJECTS))
    with pytest.raises(RuntimeError, match="device lost"):  # lost midway: the canary row fails too
        score_dataset(_cfg(data, tmp_path / "out2", batch_size=8), DeviceLost(good_calls=1))
    assert len(read_jsonl(tmp_path / "out2" / SCORES)) == 8
    assert all("reward" not in r["reason"] for r in read_jsonl(tmp_path / "out2" / REJECTS))
