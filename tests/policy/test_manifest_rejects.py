"""RL prompt manifests and SFT manifests: a bad row is a reject naming file:line and field, printed on stderr,
and the good rows still load; a manifest with no usable row is an error that shows the first reject."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from editrl.io import DataError
from policy.config import DataSection
from policy.rollouts import load_prompts
from policy.sft import ManifestBatches


def _manifest(root: Path, rows: list) -> Path:
    Image.fromarray((np.random.RandomState(0).rand(16, 16, 3) * 255).astype("uint8")).save(root / "a.png")
    (root / "bomb.png").write_bytes(b"not an image")
    path = root / "manifest.jsonl"
    lines = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


BAD = [
    b"\xff\xfe not utf-8",                                           # line 2: undecodable bytes
    {"source": "a.png"},                                             # line 3: no instruction
    {"source": "a.png", "instruction": "x" * 5000, "target": "a.png"},  # line 4: over the length limit
    {"source": ["a.png"], "instruction": "add a cat", "target": "a.png"},  # line 5: source is a list
    {"source": "bomb.png", "instruction": "add a cat", "target": "a.png"},  # line 6: not an image
    {"source": "a.png", "instruction": "\ud800", "target": "a.png"},  # line 7: lone surrogate
]


def test_rl_prompts_keep_good_rows_and_name_each_reject(tmp_path, capsys):
    good = {"source": "a.png", "instruction": "add a red square", "target": "a.png"}
    path = _manifest(tmp_path, [good, *BAD, good])
    prompts = load_prompts(DataSection(kind="manifest", manifest=str(path)))
    assert len(prompts) == 2 and prompts[0].instruction == "add a red square"
    err = capsys.readouterr().err
    assert "6 prompt rows rejected, 2 kept" in err
    for line, field in ((2, None), (3, "instruction"), (4, "instruction"), (5, "source"), (6, None), (7, "instruction")):
        assert f"manifest.jsonl:{line}:" in err
        if field:
            assert f"manifest.jsonl:{line}: field {field!r}" in err


def test_sft_rows_keep_good_rows_and_an_all_bad_manifest_is_an_error(tmp_path, capsys):
    good = {"source": "a.png", "instruction": "add a red square", "target": "a.png"}
    path = _manifest(tmp_path, [*BAD, good])
    batches = ManifestBatches(path, seed=0, batch_size=2)
    assert len(batches.rows) == 1 and "6 training rows rejected, 1 kept" in capsys.readouterr().err
    only_bad = _manifest(tmp_path, BAD)
    with pytest.raises(DataError, match=r"no usable rows \(first reject: .*manifest.jsonl:1:"):
        ManifestBatches(only_bad, seed=0, batch_size=2)
