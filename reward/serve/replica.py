"""One reward replica: a scorer loaded once that scores a batch of units and isolates failures to the units
that caused them (a bad item comes back as a ``ScoredEdit`` with ``error`` set); plain class, run as a Ray actor."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Sequence

from editrl.dimensions import DIMENSIONS
from reward.serve.client import EDIT, GROUP, Unit
from reward.serve.config import ScorerSpec


# ---- results ----------------------------------------------------------------------------------------
def error_result(message: str) -> Any:
    """A ScoredEdit that carries only an error (scores NaN)."""
    from reward.serve.scorer import ScoredEdit

    return ScoredEdit.failed(DIMENSIONS, message)


def error_unit_result(unit: Unit, message: str) -> Any:
    """The error answer for a whole unit (one ScoredEdit, or one per candidate of a group)."""
    return error_result(message) if unit[0] == EDIT else [error_result(message) for _ in unit[1][2]]


# ---- replica ----------------------------------------------------------------------------------------
class RewardReplica:
    """One scorer, loaded once; scores a batch of units and isolates failures to the units that caused them."""

    def __init__(self, spec: ScorerSpec | bytes) -> None:
        if isinstance(spec, bytes):  # the dispatcher forwards the spec pickled, so it never imports the scorer's code
            import ray

            spec = ray.cloudpickle.loads(spec)
        self.scorer = spec.build()
        self.pid = os.getpid()
        self.batches = 0

    def ping(self) -> dict[str, Any]:
        """Liveness and placement: pid and the accelerator ids Ray gave this process."""
        info: dict[str, Any] = {"pid": self.pid, "batches": self.batches}
        try:
            import ray

            info["gpu_ids"] = [str(g) for g in ray.get_gpu_ids()]
            info["node_id"] = ray.get_runtime_context().get_node_id()
        except Exception:
            pass
        return info

    def score_units(self, units: Sequence[Unit]) -> dict[str, Any]:
        """Score a batch: singles in one ``score`` call, groups in one ``score_groups`` call.

        Returns ``{"results": [per unit], "preprocess_s", "forward_s"}``; preprocess is image decoding,
        forward is the scorer call (processor + model).
        """
        self.batches += 1
        t0 = time.perf_counter()
        results: list[Any] = [None] * len(units)
        singles: list[tuple[int, Any]] = []
        groups: list[tuple[int, tuple[Any, str, list[Any]]]] = []
        for i, unit in enumerate(units):
            try:
                loaded = _decode_unit(unit)
            except Exception as err:  # unreadable image, bad fields: this unit only
                results[i] = error_unit_result(unit, f"{type(err).__name__}: {err}")
                continue
            (singles if loaded[0] == EDIT else groups).append((i, loaded[1]))
        t1 = time.perf_counter()
        if singles:
            for (i, _), res in zip(singles, self._score_singles([item for _, item in singles])):
                results[i] = res
        if groups:
            for (i, _), res in zip(groups, self._score_groups([g for _, g in groups])):
                results[i] = res
        t2 = time.perf_counter()
        return {"results": results, "preprocess_s": t1 - t0, "forward_s": t2 - t1, "pid": self.pid}

    def _score_singles(self, items: list[Any]) -> list[Any]:
        try:
            out = self.scorer.score(items)
            if len(out) != len(items):
                raise RuntimeError(f"scorer returned {len(out)} results for {len(items)} items")
            return out
        except Exception:
            if len(items) == 1:
                return [error_result(_describe_last_error())]
            return [self._score_singles([item])[0] for item in items]  # isolate the bad item

    def _score_groups(self, groups: list[tuple[Any, str, list[Any]]]) -> list[list[Any]]:
        try:
            out = self.scorer.score_groups(groups)
            if len(out) != len(groups):
                raise RuntimeError(f"scorer returned {len(out)} groups for {len(groups)}")
            return out
        except Exception:
            if len(groups) > 1:
                return [self._score_groups([g])[0] for g in groups]
            source, instruction, edited = groups[0]
            message = _describe_last_error()
            if len(edited) == 1:
                return [[error_result(message)]]
            # find the bad candidate(s): score each alone with the same prefix
            return [[self._score_groups([(source, instruction, [e])])[0][0] for e in edited]]


def _describe_last_error() -> str:
    import sys

    err = sys.exc_info()[1]
    return f"{type(err).__name__}: {err}" if err is not None else "unknown error"


def _decode(image: Any) -> Any:
    if isinstance(image, (str, Path)):
        from editrl.io import load_image

        return load_image(image)
    if isinstance(image, (list, tuple)):
        return type(image)(_decode(i) for i in image)
    return image


def _decode_unit(unit: Unit) -> Unit:
    kind, payload = unit
    if kind == EDIT:
        return kind, dataclasses.replace(payload, source=_decode(payload.source), edited=_decode(payload.edited))
    if kind == GROUP:
        source, instruction, edited = payload
        return kind, (_decode(source), instruction, [_decode(e) for e in edited])
    raise ValueError(f"unknown unit kind {kind!r}")
