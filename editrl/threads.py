"""CPU thread defaults that do not oversubscribe the machine.

torch (OpenMP) starts one intra-op thread per core and every parallel region waits at a barrier for all of them.
When another process keeps a core busy, the thread on that core gets a time slice now and then and the others spin
at the barrier meanwhile: measured on a 2-core machine with one core busy, a GRPO step of the editworld preset took
7-8x longer with 2 threads than with 1 (median 67 s against 9 s), with identical results
(docs/experiments/threads-busy-machine-2026-12-03.md). So the default is the cores this process may use (its CPU
affinity, capped by a cgroup CPU quota) minus the cores busy *now* on them, at least 1. "Now" is measured from
``/proc/stat`` over a short window while this process sleeps, so it is neither the lagging 1-minute load average
(which still shows a job that ended a minute ago, this process's own earlier work included) nor blind to load that
just started, and it counts only the cores this process may run on (the load average counts the whole host).
Busy counts niced processes too, so beside a low-priority job the default may use a core fewer than it could.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

WINDOW_S = 0.15  # how long busy cores are measured (USER_HZ=100: 15 ticks a core)


def cgroup_cpu_limit() -> float | None:
    """The CPU quota of this process's cgroup in cores (v2 ``cpu.max`` or v1 ``cfs_quota_us``), None when unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def _affinity() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (rounded up), at least 1."""
    cores = len(_affinity())
    limit = cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, math.ceil(limit))
    return max(1, cores)


def _cpu_times() -> dict[int, tuple[int, int]]:
    """``{cpu: (busy ticks, all ticks)}`` from /proc/stat (idle and iowait count as not busy)."""
    times = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
        idle = ticks[3] + ticks[4]
        times[int(name[3:])] = (sum(ticks) - idle, sum(ticks))
    return times


def busy_cores(window_s: float = WINDOW_S) -> float:
    """How many of this process's cores other work keeps busy, measured over ``window_s`` while this process
    sleeps (0 where /proc/stat cannot be read)."""
    cpus = _affinity()
    try:
        before = _cpu_times()
        time.sleep(window_s)
        after = _cpu_times()
    except (OSError, ValueError, IndexError):
        return 0.0
    busy = 0.0
    for cpu in cpus & before.keys() & after.keys():
        d_busy, d_all = after[cpu][0] - before[cpu][0], after[cpu][1] - before[cpu][1]
        if d_all > 0:
            busy += d_busy / d_all
    return busy


def default_threads() -> int:
    """Threads for one compute-bound process now: usable cores minus the busy ones (rounded), at least 1."""
    cores = usable_cores()
    return max(1, min(cores, math.floor(cores - busy_cores() + 0.5)))


def apply_default_threads() -> int | None:
    """Set torch's threads in this process to ``default_threads()`` unless the user set ``OMP_NUM_THREADS``;
    returns the number set, None if the user's setting stands. A config's ``threads`` / ``num_threads`` still
    overrides it. The environment is left alone, so processes started later choose their own: a Ray replica
    the threads of its ``num_cpus``, a worker of ``torchrun`` / ``accelerate launch`` 1."""
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return None
    n = default_threads()
    import torch

    torch.set_num_threads(n)
    return n


__all__ = ["WINDOW_S", "cgroup_cpu_limit", "usable_cores", "busy_cores", "default_threads", "apply_default_threads"]
