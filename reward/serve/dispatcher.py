"""The request queue of a reward service: batches across callers (max edits, max tokens, max wait), bounded
(back-pressure), answers each unit once, requeues the batch of a replica that died and brings the replica back.
A plain class, run as a named async Ray actor by ``reward.serve.startup.RewardService``."""

from __future__ import annotations

import asyncio
import collections
import statistics
import time
from dataclasses import dataclass
from typing import Any

from reward.serve.client import Unit, unit_size
from reward.serve.config import ScorerSpec, ServiceConfig, estimate_tokens
from reward.serve.replica import RewardReplica, error_unit_result


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
