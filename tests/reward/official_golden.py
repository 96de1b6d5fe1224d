"""Shared by tests/reward/test_official_*.py: the official EditReward golden data (tests/data/editreward_official)
and the tiny official checkpoint imported in each of its forms (made once per test session)."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[1] / "data" / "editreward_official"
IMAGES = DATA / "images"
GOLDEN = json.loads((DATA / "golden.json").read_text())
BASES = {"qwen25vl": DATA / "base_qwen25vl", "mimo": DATA / "base_mimo"}
TOL = 1e-5  # fp32: the official run and editrl differ by kernel noise (~1e-6)
_ROOT = Path(tempfile.mkdtemp(prefix="editrl-official-"))


def official_state() -> dict[str, torch.Tensor]:
    """The official >= 4.52-layout state dict of checkpoint a (fp32)."""
    from safetensors.torch import load_file

    return load_file(str(DATA / "checkpoint_a" / "model.safetensors"))


@functools.lru_cache(maxsize=None)
def checkpoint_dir(form: str) -> Path:
    """A released-style checkpoint folder: "a" (safetensors, >= 4.52 keys), "b" (pre-4.52 keys), "pth_wrapped"
    ({"model": state} as model.pth), "pth_raw" (the bare state dict), "bf16" (backbone bf16, heads fp32)."""
    if form == "a":
        return DATA / "checkpoint_a"
    if form == "b":
        return DATA / "checkpoint_b_legacy"
    out = _ROOT / f"ckpt_{form}"
    out.mkdir()
    state = official_state()
    if form == "pth_wrapped":
        torch.save({"model": state}, out / "model.pth")
    elif form == "pth_raw":
        torch.save(state, out / "model.pth")
    elif form == "bf16":
        from safetensors.torch import save_file

        save_file({k: v if k.startswith("rm_heads.") else v.to(torch.bfloat16) for k, v in state.items()},
                  str(out / "model.safetensors"))
    else:
        raise ValueError(form)
    return out


def imported(form: str = "a", base: str = "qwen25vl") -> Path:
    """``checkpoint_dir(form)`` imported with the base ``base`` into an editrl checkpoint folder."""
    return _imported(form, base)


@functools.lru_cache(maxsize=None)
def _imported(form: str, base: str) -> Path:
    from reward.official.importer import import_official

    out = _ROOT / f"imported_{form}_{base}"
    import_official(checkpoint_dir(form), BASES[base], out)
    return out


def scorer(form: str = "a", base: str = "qwen25vl", dtype: str | None = None, batch_size: int = 32):
    """A RewardScorer of the imported checkpoint (official mode), loaded once per session."""
    return _scorer(form, base, dtype, batch_size)


@functools.lru_cache(maxsize=None)
def _scorer(form: str, base: str, dtype: str | None, batch_size: int):
    from reward.serve.scorer import RewardScorer

    return RewardScorer.from_checkpoint(imported(form, base), dtype=dtype, batch_size=batch_size)


def groups(base: str = "qwen25vl", mode: str = "single") -> dict:
    """The golden groups: {name: {instruction, source, edits: [{candidate, mu, log_sigma, score, ...}]}}."""
    return GOLDEN["scores"][base][mode]


def max_diff(scored: list, edits: list[dict], dimensions: tuple[str, ...]) -> float:
    """Largest |difference| of mu, log sigma (per dimension) and score between ScoredEdits and golden edits."""
    import math

    worst = 0.0
    for s, e in zip(scored, edits, strict=True):
        assert s.error is None, s.error
        for i, d in enumerate(dimensions):
            worst = max(worst, abs(s.mu[d] - e["mu"][i]), abs(math.log(s.sigma[d]) - e["log_sigma"][i]))
        worst = max(worst, abs(s.score - e["score"]))
    return worst
