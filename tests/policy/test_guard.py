"""The guard's bookkeeping, worked out by hand (policy.guard.GuardState); the loop's use of it is tested through the
real CLI in tests/policy/test_online.py."""

from __future__ import annotations

import math

from policy.guard import GuardState


def test_guard_state_by_hand():
    g = GuardState()
    assert not g.exhausted(1)  # nothing seen yet
    assert g.observe(0, 1.0) and (g.best, g.best_step, g.since_best) == (1.0, 0, 0)
    assert g.observe(12, 2.0)
    assert not g.observe(24, 2.0)  # a tie keeps the earlier step
    assert not g.observe(36, math.nan)  # a failed evaluation is no new best, and counts as a stalled one
    assert (g.best, g.best_step, g.since_best) == (2.0, 12, 2)
    assert g.exhausted(2) and not g.exhausted(3) and not g.exhausted(0)  # 0: log only, never stop
    assert g.observe(48, 2.5) and g.since_best == 0 and not g.exhausted(1)


def test_guard_state_round_trips_through_json():
    import json

    g = GuardState()
    assert GuardState.from_state(json.loads(json.dumps(g.state()))) == g
    assert GuardState.from_state(None) == GuardState() and GuardState.from_state({}) == GuardState()
    g.observe(3, 0.25)
    g.observe(6, 0.1)
    assert GuardState.from_state(json.loads(json.dumps(g.state()))) == g
