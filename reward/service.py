"""Serve the reward model through Ray: a pool of scorer replicas behind one dynamic-batching dispatcher.

Layout of a running service::

    callers (RewardClient) --submit(request_id, units)--> RewardDispatcher (named async actor, holds the queue)
                                                            | batches across callers (max edits, max tokens)
                                                            v
                                          RewardReplica x R (one RewardScorer each, num_gpus / num_cpus,
                                                              placed through one placement group)

- Back-pressure: the queue is bounded in edits; ``submit`` awaits while it is full, so callers block.
- Fault tolerance: a replica that dies mid-batch is restarted by Ray (``max_restarts``) or, if it is gone
  for good (``ray.kill``), re-created by the dispatcher in the same placement-group bundle; the batch's
  units go back to the head of the queue. Each unit is answered once (a late or repeated answer is
  dropped), and a request id submitted twice is scored once.
- A bad item comes back as a ``ScoredEdit`` with ``error`` set; the rest of its batch is scored.
- Metrics (queue depth, batch sizes, edits/s, queue-wait / preprocess / forward latency) go to
  ``editrl.metrics.MetricsSink`` every ``metrics_interval_s``.

``RewardReplica`` and ``RewardDispatcher`` are plain classes (usable and testable without Ray); they
are wrapped with ``ray.remote(cls).options(...)`` where they are started.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from reward.client import (DEFAULT_NAME, DEFAULT_NAMESPACE, EDIT, GROUP, RewardClient, Unit, keep_ray_on_loopback,
                           unit_size)

DIMENSIONS = ("instruction_following", "visual_quality")  # contract order (editworld.DIMENSIONS)
STRATEGIES = ("STRICT_PACK", "PACK", "SPREAD", "STRICT_SPREAD")


@dataclass
class ServiceConfig:
    """How the reward pool is sized, placed and batched."""

    name: str = DEFAULT_NAME  # Ray actor name of the dispatcher (clients connect by it)
    namespace: str = DEFAULT_NAMESPACE  # Ray namespace of the dispatcher
    detached: bool = False  # keep the service alive after the starting driver exits
    replicas: int = 1  # number of scorer replicas (actors)
    num_gpus: float = 0.0  # GPUs per replica; fractional shares a GPU (0.5 = two replicas per GPU)
    num_cpus: float = 1.0  # CPUs per replica
    placement_strategy: str = "PACK"  # placement group strategy: STRICT_PACK, PACK, SPREAD, STRICT_SPREAD
    placement_timeout_s: float = 120.0  # give up when the cluster cannot host the replicas in this time
    max_batch_edits: int = 32  # most edits (scores) in one replica call
    max_batch_tokens: int = 32768  # most estimated sequence tokens in one replica call
    max_wait_ms: float = 5.0  # how long a non-full batch waits for more requests
    max_queue_edits: int = 1024  # bounded queue: submit blocks while this many edits wait
    max_attempts: int = 3  # a unit whose replica died this many times is answered with an error
    max_restarts: int = -1  # Ray restarts of a replica process (-1: unlimited)
    restart_timeout_s: float = 120.0  # wait this long for a restarting replica before re-creating it
    max_concurrent_calls: int = 1000  # concurrent submit calls the dispatcher accepts (then Ray queues them)
    image_patch: int = 28  # pixels per visual token side (Qwen2.5-VL: 14 px patches merged 2x2)
    image_area: int | None = None  # pixels per image after the processor's resize (None: estimate from image size)
    text_chars_per_token: float = 4.0  # token estimate for instructions
    prompt_tokens: int = 64  # token estimate for the fixed prompt and special tokens of one edit
    metrics_dir: str | None = None  # write metrics.jsonl here (None: no file)
    metrics_interval_s: float = 10.0  # how often the dispatcher logs a metrics row

    def validate(self) -> "ServiceConfig":
        if self.replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {self.replicas}")
        if self.num_gpus < 0 or self.num_cpus < 0 or (self.num_gpus == 0 and self.num_cpus == 0):
            raise ValueError(f"each replica needs some resources (num_cpus={self.num_cpus}, num_gpus={self.num_gpus})")
        if self.num_gpus > 1 and self.num_gpus != int(self.num_gpus):
            raise ValueError(f"num_gpus above 1 must be whole, got {self.num_gpus}")
        if self.placement_strategy not in STRATEGIES:
            raise ValueError(f"placement_strategy must be one of {STRATEGIES}, got {self.placement_strategy!r}")
        if self.max_batch_edits < 1 or self.max_queue_edits < 1:
            raise ValueError("max_batch_edits and max_queue_edits must be >= 1")
        return self


@dataclass
class ScorerSpec:
    """How a replica builds its scorer: a checkpoint folder, or a picklable factory (tests, benchmarks)."""

    checkpoint: str | None = None  # RewardScorer.from_checkpoint(checkpoint, device)
    device: str | None = None  # torch device for the checkpoint ("cpu", "cuda"); None: the scorer decides
    factory: Callable[..., Any] | None = None  # alternative: factory(**kwargs) returns a scorer
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Any:
        """Load the scorer (runs once per replica process)."""
        if self.factory is not None:
            return self.factory(**self.kwargs)
        if self.checkpoint is None:
            raise ValueError("ScorerSpec needs a checkpoint or a factory")
        from reward.scorer import RewardScorer

        return RewardScorer.from_checkpoint(self.checkpoint, device=self.device)


# ---- token estimate ---------------------------------------------------------------------------------
def image_tokens(image: Any, patch: int = 28, area: int | None = None) -> int:
    """Visual tokens of one image (Qwen2.5-VL: one per ``patch`` x ``patch`` pixels); 256 if unknown.

    With ``area`` (the processor resizes every image to that many pixels) the image itself is not read.
    """
    if area:
        return max(1, round(area / patch**2))
    size = getattr(image, "size", None)
    if not (isinstance(size, tuple) and len(size) == 2):
        try:
            from PIL import Image

            with Image.open(image) as im:  # reads the header only
                size = im.size
        except Exception:
            return 256
    w, h = size
    return max(1, round(w / patch)) * max(1, round(h / patch))


def estimate_tokens(unit: Unit, cfg: ServiceConfig) -> int:
    """Sequence tokens a unit costs on a replica (a group pays its shared prefix once)."""
    kind, payload = unit
    if kind == EDIT:
        source, instruction, edited = payload.source, payload.instruction, [payload.edited]
    else:
        source, instruction, edited = payload
    sources = source if isinstance(source, (list, tuple)) else [source]
    prefix = cfg.prompt_tokens + sum(image_tokens(s, cfg.image_patch, cfg.image_area) for s in sources)
    prefix += int(len(str(instruction)) / cfg.text_chars_per_token)
    return prefix + sum(image_tokens(e, cfg.image_patch, cfg.image_area) + 4 for e in edited)


# ---- results ----------------------------------------------------------------------------------------
def error_result(message: str) -> Any:
    """A ScoredEdit that carries only an error (scores NaN)."""
    from reward.scorer import ScoredEdit

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


# ---- dispatcher -------------------------------------------------------------------------------------
@dataclass
class _Request:
    request_id: str
    results: list[Any]
    remaining: int
    future: asyncio.Future
    submitted_at: float


@dataclass
class _Item:
    request: _Request
    index: int
    unit: Unit
    edits: int
    tokens: int
    enqueued_at: float
    attempts: int = 0


_MISSING = object()
_COUNTERS = ("requests", "duplicate_requests", "edits_submitted", "batches", "edits_scored", "units_answered",
             "duplicate_answers_dropped", "units_retried", "replica_failures", "batch_errors",
             "replicas_restarted_by_ray", "replicas_recreated")


class RewardDispatcher:
    """Holds the request queue, forms batches across callers and drives the replicas (run as an async Ray actor)."""

    def __init__(self, spec: ScorerSpec | bytes, cfg: ServiceConfig, placement_group: Any = None) -> None:
        self.spec, self.cfg, self.placement_group = spec, cfg.validate(), placement_group
        self._queue: collections.deque[_Item] = collections.deque()
        self._queued_edits = 0
        self._queued_tokens = 0
        self._inflight: dict[str, _Request] = {}
        self._done: collections.OrderedDict[str, list[Any]] = collections.OrderedDict()
        self._done_capacity = 4096
        self._replicas: list[Any] = []
        self._cond: asyncio.Condition | None = None
        self._idle: asyncio.Queue | None = None
        self._tasks: list[asyncio.Task] = []
        self._busy: set[int] = set()  # replica slots with a batch in flight
        self._started = False
        self._closing = False
        self._sink = None
        self._batch_seq = 0
        self._counters = collections.Counter({k: 0 for k in _COUNTERS})
        self._waiting_callers = 0
        self._peak = {"waiting_callers": 0, "queue_depth_edits": 0}  # high-water marks since start
        self._batch_sizes: collections.deque[int] = collections.deque(maxlen=1000)
        self._requests_per_batch: collections.deque[int] = collections.deque(maxlen=1000)
        self._lat: dict[str, collections.deque[float]] = {
            k: collections.deque(maxlen=2000) for k in ("queue_wait_s", "preprocess_s", "forward_s", "request_s")}
        self._window = {"t": time.monotonic(), "edits": 0}

    # ---- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> list[dict[str, Any]]:
        """Create the replicas, wait until each has loaded its scorer, start batching; returns their ping info."""
        if self._started:
            return await asyncio.gather(*[r.ping.remote() for r in self._replicas])
        self._started = True
        self._cond = asyncio.Condition()
        self._idle = asyncio.Queue()
        self._replicas = [self._make_replica(i) for i in range(self.cfg.replicas)]
        infos = await asyncio.gather(*[r.ping.remote() for r in self._replicas])
        for i in range(self.cfg.replicas):
            self._idle.put_nowait(i)
        if self.cfg.metrics_dir:
            from editrl.metrics import MetricsSink

            self._sink = MetricsSink(self.cfg.metrics_dir, filename="reward_service_metrics.jsonl")
            self._tasks.append(asyncio.get_running_loop().create_task(self._metrics_loop()))
        self._tasks.append(asyncio.get_running_loop().create_task(self._batch_loop()))
        return list(infos)

    async def shutdown(self) -> None:
        """Stop batching, fail what is pending, kill the replicas."""
        import ray

        self._closing = True
        for task in self._tasks:
            task.cancel()
        for request in list(self._inflight.values()):
            if not request.future.done():
                request.future.set_exception(RuntimeError("reward service shut down"))
        for replica in self._replicas:
            ray.kill(replica, no_restart=True)
        if self._sink is not None:
            self._sink.log(self._snapshot(reset_window=True))
            self._sink.close()
            self._sink = None

    def replicas(self) -> list[Any]:
        """The replica actor handles (for placement checks and fault-injection tests)."""
        return list(self._replicas)

    def _make_replica(self, index: int) -> Any:
        import ray

        options: dict[str, Any] = dict(num_cpus=self.cfg.num_cpus, num_gpus=self.cfg.num_gpus,
                                       max_restarts=self.cfg.max_restarts, max_task_retries=0)
        if self.placement_group is not None:
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                placement_group=self.placement_group, placement_group_bundle_index=index)
        return ray.remote(RewardReplica).options(**options).remote(self.spec)

    # ---- submit (called concurrently by many callers) ---------------------------------------------
    async def submit(self, request_id: str, units: list[Unit]) -> list[Any]:
        """Score one request's units; returns one result per unit, in order. Blocks while the queue is full."""
        if not self._started:
            await self.start()
        if self._closing:
            raise RuntimeError("reward service is shutting down")
        if request_id in self._done:
            self._counters["duplicate_requests"] += 1
            return self._done[request_id]
        if request_id in self._inflight:
            self._counters["duplicate_requests"] += 1
            return await asyncio.shield(self._inflight[request_id].future)
        loop = asyncio.get_running_loop()
        request = _Request(request_id, [_MISSING] * len(units), len(units), loop.create_future(), time.monotonic())
        self._inflight[request_id] = request
        self._counters["requests"] += 1
        if not units:
            self._finish(request)
            return []
        items = [_Item(request, i, u, unit_size(u), estimate_tokens(u, self.cfg), 0.0) for i, u in enumerate(units)]
        edits = sum(it.edits for it in items)
        assert self._cond is not None
        async with self._cond:
            self._waiting_callers += 1
            self._peak["waiting_callers"] = max(self._peak["waiting_callers"], self._waiting_callers)
            try:
                # an oversized request is admitted into an empty queue, so it cannot wait forever
                await self._cond.wait_for(
                    lambda: self._queued_edits == 0 or self._queued_edits + edits <= self.cfg.max_queue_edits)
            finally:
                self._waiting_callers -= 1
            now = time.monotonic()
            for it in items:
                it.enqueued_at = now
            self._push(items, front=False)
            self._counters["edits_submitted"] += edits
            self._cond.notify_all()
        return await asyncio.shield(request.future)

    def _push(self, items: list[_Item], *, front: bool) -> None:
        if front:
            self._queue.extendleft(reversed(items))
        else:
            self._queue.extend(items)
        self._queued_edits += sum(it.edits for it in items)
        self._peak["queue_depth_edits"] = max(self._peak["queue_depth_edits"], self._queued_edits)
        self._queued_tokens += sum(it.tokens for it in items)

    # ---- batching ----------------------------------------------------------------------------------
    async def _batch_loop(self) -> None:
        assert self._idle is not None
        while not self._closing:
            slot = await self._idle.get()  # a free replica first: while all are busy, the queue grows into bigger batches
            batch = await self._take_batch()
            asyncio.get_running_loop().create_task(self._run_batch(slot, batch))

    async def _take_batch(self) -> list[_Item]:
        assert self._cond is not None
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        async with self._cond:
            await self._cond.wait_for(lambda: bool(self._queue))
            deadline = loop.time() + cfg.max_wait_ms / 1000
            while self._queued_edits < cfg.max_batch_edits and self._queued_tokens < cfg.max_batch_tokens:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._cond.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch = [self._queue.popleft()]
            edits, tokens = batch[0].edits, batch[0].tokens
            # a unit that already outlived a dying replica twice runs alone, so a poison input cannot take others down
            while batch[0].attempts < 2 and self._queue and self._queue[0].attempts < 2:
                nxt = self._queue[0]
                if edits + nxt.edits > cfg.max_batch_edits or tokens + nxt.tokens > cfg.max_batch_tokens:
                    break
                batch.append(self._queue.popleft())
                edits, tokens = edits + nxt.edits, tokens + nxt.tokens
            self._queued_edits -= edits
            self._queued_tokens -= tokens
            self._cond.notify_all()  # room in the queue: wake blocked submitters
        return batch

    async def _run_batch(self, slot: int, batch: list[_Item]) -> None:
        import ray

        assert self._idle is not None
        self._batch_seq += 1
        started = time.monotonic()
        for it in batch:
            self._lat["queue_wait_s"].append(started - it.enqueued_at)
        replica = self._replicas[slot]
        self._busy.add(slot)
        try:
            out = await replica.score_units.remote([it.unit for it in batch])
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as err:
            self._busy.discard(slot)
            self._counters["replica_failures"] += 1
            await self._requeue(batch, f"{type(err).__name__}: {err}")
            asyncio.get_running_loop().create_task(self._recover(slot))
            return
        except Exception as err:  # the replica raised for the whole batch: answer with errors, keep the replica
            self._busy.discard(slot)
            self._counters["batch_errors"] += 1
            for it in batch:
                self._deliver(it, error_unit_result(it.unit, f"{type(err).__name__}: {err}"))
            self._idle.put_nowait(slot)
            return
        self._busy.discard(slot)
        self._idle.put_nowait(slot)
        self._lat["preprocess_s"].append(out["preprocess_s"])
        self._lat["forward_s"].append(out["forward_s"])
        edits = sum(it.edits for it in batch)
        self._batch_sizes.append(edits)
        self._requests_per_batch.append(len({id(it.request) for it in batch}))
        self._counters["batches"] += 1
        self._counters["edits_scored"] += edits
        self._window["edits"] += edits
        for it, result in zip(batch, out["results"]):
            self._deliver(it, result)

    async def _requeue(self, batch: list[_Item], reason: str) -> None:
        assert self._cond is not None
        retry = []
        for it in batch:
            it.attempts += 1
            if it.attempts >= self.cfg.max_attempts:
                self._deliver(it, error_unit_result(it.unit, f"replica failed {it.attempts} times: {reason}"))
            else:
                retry.append(it)
        if retry:
            async with self._cond:
                self._push(retry, front=True)
                self._counters["units_retried"] += len(retry)
                self._cond.notify_all()

    async def _recover(self, slot: int) -> None:
        """Bring replica ``slot`` back: wait for Ray's restart, else kill it for good and create a new one."""
        import ray

        assert self._idle is not None
        try:
            await asyncio.wait_for(_await_ref(self._replicas[slot].ping.remote()), self.cfg.restart_timeout_s)
            self._counters["replicas_restarted_by_ray"] += 1
        except Exception:
            while not self._closing:
                try:
                    ray.kill(self._replicas[slot], no_restart=True)
                except Exception:
                    pass
                self._replicas[slot] = self._make_replica(slot)
                try:
                    await asyncio.wait_for(_await_ref(self._replicas[slot].ping.remote()), self.cfg.restart_timeout_s)
                    self._counters["replicas_recreated"] += 1
                    break
                except Exception:
                    await asyncio.sleep(1.0)
        self._idle.put_nowait(slot)

    def _deliver(self, item: _Item, result: Any) -> None:
        request = item.request
        if request.future.done() or request.results[item.index] is not _MISSING:
            self._counters["duplicate_answers_dropped"] += 1
            return
        request.results[item.index] = result
        request.remaining -= 1
        self._counters["units_answered"] += 1
        if request.remaining == 0:
            self._finish(request)

    def _finish(self, request: _Request) -> None:
        self._lat["request_s"].append(time.monotonic() - request.submitted_at)
        self._inflight.pop(request.request_id, None)
        self._done[request.request_id] = request.results
        while len(self._done) > self._done_capacity:
            self._done.popitem(last=False)
        if not request.future.done():
            request.future.set_result(request.results)

    # ---- metrics -----------------------------------------------------------------------------------
    async def stats(self) -> dict[str, Any]:
        """Counters and latency percentiles now (does not reset the edits/s window)."""
        return self._snapshot(reset_window=False)

    def _snapshot(self, *, reset_window: bool) -> dict[str, Any]:
        now = time.monotonic()
        elapsed = max(now - self._window["t"], 1e-9)
        row: dict[str, Any] = {
            "queue_depth_edits": self._queued_edits,
            "queue_depth_units": len(self._queue),
            "waiting_callers": self._waiting_callers,
            "waiting_callers_max": self._peak["waiting_callers"],
            "queue_depth_edits_max": self._peak["queue_depth_edits"],
            "busy_replicas": len(self._busy),
            "inflight_requests": len(self._inflight),
            "edits_per_s": self._window["edits"] / elapsed,
            "batch_edits_mean": statistics.fmean(self._batch_sizes) if self._batch_sizes else 0.0,
            "batch_edits_max": max(self._batch_sizes, default=0),
            "requests_per_batch_max": max(self._requests_per_batch, default=0),
            "requests_per_batch_mean": statistics.fmean(self._requests_per_batch) if self._requests_per_batch else 0.0,
        }
        row.update({k: int(v) for k, v in self._counters.items()})
        for name, values in self._lat.items():
            if values:
                ordered = sorted(values)
                row[f"{name}_p50"] = ordered[len(ordered) // 2]
                row[f"{name}_p95"] = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        if reset_window:
            self._window = {"t": now, "edits": 0}
        return row

    async def _metrics_loop(self) -> None:
        step = 0
        while not self._closing:
            await asyncio.sleep(self.cfg.metrics_interval_s)
            if self._sink is not None:
                self._sink.log(self._snapshot(reset_window=True), step=step)
                step += 1


async def _await_ref(ref: Any) -> Any:
    return await ref


# ---- driver-side service ----------------------------------------------------------------------------
class RewardService:
    """Start, inspect and stop a reward pool from a Ray driver."""

    def __init__(self, dispatcher: Any, placement_group: Any, cfg: ServiceConfig, replica_info: list[dict]) -> None:
        self.dispatcher, self.placement_group, self.cfg, self.replica_info = dispatcher, placement_group, cfg, replica_info

    @classmethod
    def start(cls, spec: ScorerSpec, cfg: ServiceConfig) -> "RewardService":
        """Reserve the replicas' resources in a placement group, start the named dispatcher and its replicas."""
        import ray
        from ray.util.placement_group import placement_group, remove_placement_group

        cfg.validate()
        if not ray.is_initialized():
            raise RuntimeError("call ray.init() (or reward.service.init_local_ray()) before RewardService.start")
        bundle = {k: v for k, v in (("CPU", cfg.num_cpus), ("GPU", cfg.num_gpus)) if v > 0}
        lifetime = "detached" if cfg.detached else None
        pg = placement_group([dict(bundle) for _ in range(cfg.replicas)], strategy=cfg.placement_strategy,
                             lifetime=lifetime, name=f"{cfg.name}-replicas")
        try:
            ray.get(pg.ready(), timeout=cfg.placement_timeout_s)
        except ray.exceptions.GetTimeoutError:
            remove_placement_group(pg)
            raise RuntimeError(
                f"cannot place {cfg.replicas} reward replicas of {bundle} ({cfg.placement_strategy}) within "
                f"{cfg.placement_timeout_s:.0f}s; cluster has {ray.cluster_resources()}") from None
        dispatcher = ray.remote(RewardDispatcher).options(
            name=cfg.name, namespace=cfg.namespace, lifetime=lifetime, num_cpus=0,
            max_concurrency=cfg.max_concurrent_calls, get_if_exists=False,
        ).remote(ray.cloudpickle.dumps(spec), cfg, pg)
        try:
            info = ray.get(dispatcher.start.remote())
        except Exception:
            ray.kill(dispatcher)
            remove_placement_group(pg)
            raise
        return cls(dispatcher, pg, cfg, info)

    def client(self, **kwargs: Any) -> RewardClient:
        """A client bound to this service's dispatcher (same API as ``RewardClient.connect``)."""
        return RewardClient(self.dispatcher, name=self.cfg.name, namespace=self.cfg.namespace, **kwargs)

    def stats(self) -> dict[str, Any]:
        import ray

        return ray.get(self.dispatcher.stats.remote())

    def replicas(self) -> list[Any]:
        import ray

        return ray.get(self.dispatcher.replicas.remote())

    def shutdown(self) -> None:
        """Stop the dispatcher and replicas and release the placement group."""
        import ray
        from ray.util.placement_group import remove_placement_group

        try:
            ray.get(self.dispatcher.shutdown.remote(), timeout=30)
        finally:
            ray.kill(self.dispatcher)
            remove_placement_group(self.placement_group)


def init_local_ray(address: str | None = None, *, num_cpus: int | None = None, num_gpus: float | None = None,
                   namespace: str = DEFAULT_NAMESPACE) -> None:
    """Join the cluster at ``address``, or start a local Ray bound to loopback (127.0.0.1) with no dashboard.

    Ray replaces a requested node IP of 127.0.0.1 by the machine's routable address, so a local start
    switches Ray's multi-node mode off (``reward.client.keep_ray_on_loopback``); clients on this machine
    detect the loopback cluster and do the same when they connect.
    """
    if address:
        import ray

        if not ray.is_initialized():
            ray.init(address=address, namespace=namespace)
        return
    import ray

    if ray.is_initialized():
        return
    keep_ray_on_loopback()
    ray.init(num_cpus=num_cpus, num_gpus=num_gpus, namespace=namespace, include_dashboard=False)


def cluster_address() -> str:
    """The running cluster's GCS address (``host:port``), for ``ray://NAME@ADDRESS`` client specs."""
    import ray

    return ray.get_runtime_context().gcs_address


def node_ip_address() -> str:
    """The IP address the running Ray node is bound to (127.0.0.1 after a local ``init_local_ray``)."""
    import ray

    return ray.nodes()[0]["NodeManagerAddress"]
