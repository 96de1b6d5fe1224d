"""Reward training resumes only with the inputs its checkpoint was trained on: edited pairs or a changed setting
are refused, naming them and how to start over; an unchanged rerun (or a longer one) resumes."""

from __future__ import annotations

import shutil

import pytest

from editrl.config import ConfigError
from tests.reward.test_train import _cfg, write_fixture


@pytest.fixture(scope="module")
def pairs_source(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("pairs"))


def test_edited_pairs_or_setting_are_refused_unchanged_rerun_resumes(pairs_source, tmp_path):
    from reward.train.trainer import train

    data, out = tmp_path / "data", tmp_path / "run"
    shutil.copytree(pairs_source, data)
    first = train(_cfg(data, out, "train.max_steps=3"), stop_at_step=1, progress=False)
    assert first.step == 1 and (out / "fingerprint.json").is_file()

    pairs = data / "pairs.jsonl"
    original = pairs.read_text()
    pairs.write_text(original.replace("add a red square", "add a blue square", 1))
    with pytest.raises(ConfigError, match=r"run holds checkpoints trained from other inputs; changed since: the "
                                          r"training pairs .*pairs\.jsonl changed \(sha256:.* -> sha256:.*\)\. "
                                          r"Rerun without resume= .* or with another out_dir="):
        train(_cfg(data, out, "train.max_steps=3", "resume=auto"), progress=False)
    pairs.write_text(original)
    with pytest.raises(ConfigError, match=r"train\.lr 0\.003 -> 0\.001"):
        train(_cfg(data, out, "train.max_steps=3", "train.lr=1e-3", "resume=auto"), progress=False)
    # an explicit checkpoint folder is checked against the run that wrote it
    with pytest.raises(ConfigError, match=r"train\.seed 0 -> 5"):
        train(_cfg(data, tmp_path / "other", "train.max_steps=3", "train.seed=5", f"resume={first.last_checkpoint}"),
              progress=False)
    second = train(_cfg(data, out, "train.max_steps=2", "resume=auto"), progress=False)  # same inputs: resumes
    assert second.step == 2 and len(second.losses) == 1
