"""The shared checkpoint store: atomic commit, torn checkpoints skipped with a warning, keep-last-N, fallbacks."""

import json

import pytest
import torch

from editrl.checkpoint import (CheckpointStore, load_tensors, optimizer_from_tensors, optimizer_tensors, problem,
                               read_state, restore_rng, rng_state)
from editrl.io import DataError


def _save(store: CheckpointStore, step: int) -> None:
    store.save(step, {"loss": float(step)}, tensors={"w.safetensors": {"w": torch.full((64,), float(step))}})


def test_commit_is_atomic_and_keeps_last_n(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for step in (1, 2, 3):
        _save(store, step)
    assert [p.name for p in store.complete()] == ["step_000002", "step_000003"]
    state = read_state(store.latest())
    assert state["step"] == 3 and state["loss"] == 3.0 and state["files"]["w.safetensors"] > 0
    assert not list(store.root.glob(".staging_*"))


def test_partial_newest_is_skipped_with_a_warning(tmp_path):
    store = CheckpointStore(tmp_path, keep=3)
    _save(store, 1)
    _save(store, 2)
    (store.root / "step_000003").mkdir()            # a folder that never got its state file
    (store.root / "step_000003" / "w.safetensors").write_bytes(b"xx")
    with pytest.warns(UserWarning, match="step_000003.*state.json missing"):
        assert store.latest().name == "step_000002"


def test_truncated_weights_fall_back_to_previous(tmp_path):
    store = CheckpointStore(tmp_path, keep=3)
    _save(store, 1)
    _save(store, 2)
    f = store.root / "step_000002" / "w.safetensors"
    f.write_bytes(f.read_bytes()[:40])
    assert "truncated" in problem(f.parent)
    with pytest.warns(UserWarning, match="step_000002"):
        latest = store.latest()
    assert latest.name == "step_000001"
    assert torch.equal(load_tensors(latest / "w.safetensors")["w"], torch.full((64,), 1.0))


def test_corrupt_same_size_weights_fall_back_on_load(tmp_path):
    store = CheckpointStore(tmp_path, keep=3)
    _save(store, 1)
    _save(store, 2)
    f = store.root / "step_000002" / "w.safetensors"
    f.write_bytes(b"\xff" * f.stat().st_size)        # same size, garbage header
    with pytest.warns(UserWarning, match="falling back"):
        path, tensors = store.load_latest(lambda p: load_tensors(p / "w.safetensors"))
    assert path.name == "step_000001" and tensors["w"][0] == 1.0
    with pytest.raises(DataError, match="w.safetensors"):
        load_tensors(f)


def test_optimizer_and_rng_round_trip(tmp_path):
    p = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.AdamW([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    tensors, meta = optimizer_tensors(opt.state_dict())
    json.dumps(meta)
    opt2 = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))], lr=0.5)
    opt2.load_state_dict(optimizer_from_tensors(tensors, json.loads(json.dumps(meta))))
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert opt2.param_groups[0]["lr"] == 0.1
    rt, rm = rng_state()
    a = (torch.rand(2), __import__("random").random(), __import__("numpy").random.rand())
    restore_rng(rt, json.loads(json.dumps(rm)))
    b = (torch.rand(2), __import__("random").random(), __import__("numpy").random.rand())
    assert torch.equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2]
