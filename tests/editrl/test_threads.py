"""Thread defaults: usable cores minus the cores busy now (from /proc/stat deltas), at least 1; a user's
OMP_NUM_THREADS stands."""

from __future__ import annotations

import editrl.threads as threads


def _fake_stat(monkeypatch, snapshots, cpus=(0, 1)):
    """/proc/stat reads return ``snapshots`` in turn: {cpu: (busy ticks, all ticks)}; no sleeping."""
    seq = iter(snapshots)
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(seq))
    monkeypatch.setattr(threads, "_affinity", lambda: set(cpus))
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)


def test_busy_cores_count_only_this_process_cores(monkeypatch):
    before = {0: (100, 1000), 1: (100, 1000), 2: (0, 1000)}
    after = {0: (115, 1015), 1: (100, 1015), 2: (15, 1015)}  # cpu 0 fully busy, cpu 1 idle, cpu 2 not ours
    _fake_stat(monkeypatch, [before, after])
    assert threads.busy_cores() == 1.0


def test_default_threads_is_usable_minus_busy_rounded_at_least_one(monkeypatch):
    idle = [{0: (0, 0), 1: (0, 0)}, {0: (1, 15), 1: (0, 15)}]  # ~0.07 busy
    _fake_stat(monkeypatch, idle)
    assert threads.default_threads() == 2
    one_busy = [{0: (0, 0), 1: (0, 0)}, {0: (15, 15), 1: (2, 15)}]
    _fake_stat(monkeypatch, one_busy)
    assert threads.default_threads() == 1
    all_busy = [{0: (0, 0), 1: (0, 0)}, {0: (15, 15), 1: (15, 15)}]
    _fake_stat(monkeypatch, all_busy)
    assert threads.default_threads() == 1


def test_cgroup_quota_caps_the_usable_cores(monkeypatch):
    monkeypatch.setattr(threads, "_affinity", lambda: set(range(16)))
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 2.5)
    assert threads.usable_cores() == 3


def test_a_user_setting_stands(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.apply_default_threads() is None
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(threads, "default_threads", lambda: 1)
    import torch

    before = torch.get_num_threads()
    try:
        assert threads.apply_default_threads() == 1
        assert torch.get_num_threads() == 1
        assert "OMP_NUM_THREADS" not in threads.os.environ  # children (Ray replicas, launched workers) choose their own
    finally:
        torch.set_num_threads(before)


def test_reading_this_machine_gives_a_count_in_range():
    n = threads.default_threads()
    assert 1 <= n <= threads.usable_cores()
