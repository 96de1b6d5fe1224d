"""The one reward client that curation, online RL and best-of-N call.

Anything with ``score_groups(groups) -> list[list[ScoredEdit]]`` (and ``score(list[EditInput])``) is a
reward client: the in-process ``reward.serve.scorer.RewardScorer``, or ``RewardClient``, which talks to the
Ray-served pool started by ``editrl reward serve`` (``reward.serve.startup``). ``make_reward_client(spec)``
picks one from a string, so callers never branch on how the reward model is hosted.

The wire format between client, dispatcher and replicas is a list of *units*: ``("edit", EditInput)``
for a single edit, ``("group", (source, instruction, [edited, ...]))`` for candidates sharing a prefix.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any, Protocol, Sequence

DEFAULT_NAME = "editrl-reward"
DEFAULT_NAMESPACE = "editrl"
RAY_SCHEME = "ray://"

EDIT, GROUP = "edit", "group"
Unit = tuple[str, Any]
Group = tuple[Any, str, Sequence[Any]]


class RewardClientProtocol(Protocol):
    """What curation, policy and best-of-N may call on a reward client."""

    def score(self, items: Sequence[Any]) -> list[Any]: ...

    def score_groups(self, groups: Sequence[Group]) -> list[list[Any]]: ...


def edit_units(items: Sequence[Any]) -> list[Unit]:
    """Wrap single edits (``EditInput``) as wire units."""
    return [(EDIT, item) for item in items]


def group_units(groups: Sequence[Group]) -> list[Unit]:
    """Wrap ``(source, instruction, edited_list)`` groups as wire units (validated, so a bad group fails here)."""
    units = []
    for i, group in enumerate(groups):
        if not isinstance(group, (tuple, list)) or len(group) != 3:
            raise ValueError(f"group {i}: expected (source, instruction, [edited, ...]), got {type(group).__name__}")
        source, instruction, edited = group
        units.append((GROUP, (source, instruction, list(edited))))
    return units


def unit_size(unit: Unit) -> int:
    """Number of edits (scores) a unit yields."""
    kind, payload = unit
    return len(payload[2]) if kind == GROUP else 1


class RewardClient:
    """Client of a Ray-served reward pool, found by actor name; same protocol as ``RewardScorer``.

    Large calls are split into requests of at most ``chunk_edits`` edits, with at most ``max_outstanding``
    requests in flight, so one caller cannot flood the dispatcher; each request carries an id, and a
    request whose dispatcher call fails is resubmitted under the *same* id, which the dispatcher
    answers once (deduplicated).
    """

    def __init__(self, dispatcher: Any, *, name: str = DEFAULT_NAME, namespace: str = DEFAULT_NAMESPACE,
                 chunk_edits: int = 64, max_outstanding: int = 8, retries: int = 3) -> None:
        self._dispatcher = dispatcher
        self.name, self.namespace = name, namespace
        self.chunk_edits, self.max_outstanding, self.retries = chunk_edits, max_outstanding, retries

    @classmethod
    def connect(cls, name: str = DEFAULT_NAME, address: str | None = None, *, namespace: str = DEFAULT_NAMESPACE,
                timeout_s: float = 30.0, **kwargs: Any) -> "RewardClient":
        """Attach to a running reward service by name (joins the Ray cluster at ``address``, default ``auto``)."""
        import ray

        if not ray.is_initialized():
            if _is_loopback(address):
                keep_ray_on_loopback()
                _use_local_auth_token()
            ray.init(address=address or "auto", namespace=namespace, log_to_driver=False)
        return cls(_lookup(name, namespace, timeout_s), name=name, namespace=namespace, **kwargs)

    # ---- the reward-client protocol -------------------------------------------------------------
    def score(self, items: Sequence[Any]) -> list[Any]:
        """Score single edits; results in input order, a bad item has ``error`` set."""
        return self._run(edit_units(items))

    def score_group(self, source: Any, instruction: str, edited: Sequence[Any]) -> list[Any]:
        """Score candidates of one source and instruction (shared prefix on the replica)."""
        return self._run(group_units([(source, instruction, edited)]))[0]

    def score_groups(self, groups: Sequence[Group]) -> list[list[Any]]:
        """Score several groups; one list of results per group, in order."""
        return self._run(group_units(groups))

    def stats(self) -> dict[str, Any]:
        """The dispatcher's counters (queue depth, batches, restarts, ...)."""
        import ray

        return ray.get(self._dispatcher.stats.remote())

    # ---- internals ------------------------------------------------------------------------------
    def _run(self, units: list[Unit]) -> list[Any]:
        import ray

        chunks = _chunk(units, self.chunk_edits)
        ids = [uuid.uuid4().hex for _ in chunks]
        results: list[list[Any] | None] = [None] * len(chunks)
        pending: dict[Any, int] = {}
        next_chunk = 0
        while next_chunk < len(chunks) or pending:
            while next_chunk < len(chunks) and len(pending) < self.max_outstanding:
                pending[self._dispatcher.submit.remote(ids[next_chunk], chunks[next_chunk])] = next_chunk
                next_chunk += 1
            ready, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ready[0])
            try:
                results[i] = ray.get(ready[0])
            except ray.exceptions.RayActorError:
                results[i] = self._resubmit(ids[i], chunks[i])
        return [r for chunk in results for r in chunk]  # type: ignore[union-attr]

    def _resubmit(self, request_id: str, units: list[Unit]) -> list[Any]:
        """The dispatcher died or restarted: look it up again and resend under the same request id."""
        import ray

        last: Exception | None = None
        for attempt in range(self.retries):
            time.sleep(0.5 * 2**attempt)
            try:
                self._dispatcher = _lookup(self.name, self.namespace, timeout_s=10.0)
                return ray.get(self._dispatcher.submit.remote(request_id, units))
            except (ray.exceptions.RayActorError, ValueError) as err:
                last = err
        raise RuntimeError(f"reward service {self.name!r} unreachable after {self.retries} retries") from last


def keep_ray_on_loopback() -> None:
    """Make Ray use 127.0.0.1 as this node's address (for a single-machine cluster that must not listen outside).

    Ray replaces a requested node IP of 127.0.0.1 by the machine's routable address unless multi-node
    clusters are off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read at import; child processes inherit it).
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # in case ray was imported before the variable was set


def _use_local_auth_token() -> None:
    """Send this machine's Ray auth token (~/.ray/auth_token) to a loopback cluster given by explicit address.

    Ray does this by itself only for a cluster it finds with ``address="auto"``; a local cluster named by
    ``host:port`` is the same cluster, started by ``editrl reward serve`` on this machine.
    """
    try:
        from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available

        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    except ImportError:  # Ray versions without token authentication
        pass


def _is_loopback(address: str | None) -> bool:
    """Whether ``address`` (None / "auto": the cluster last started on this machine) is a loopback cluster."""
    target = address
    if address in (None, "auto"):
        try:
            from ray._private.services import get_ray_address_from_environment

            target = get_ray_address_from_environment("auto", None)
        except Exception:
            return False
    host = (target or "").rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


def _chunk(units: list[Unit], max_edits: int) -> list[list[Unit]]:
    chunks: list[list[Unit]] = []
    size = 0
    for unit in units:
        n = unit_size(unit)
        if not chunks or size + n > max_edits:
            chunks.append([])
            size = 0
        chunks[-1].append(unit)
        size += n
    return chunks


def _lookup(name: str, namespace: str, timeout_s: float) -> Any:
    import ray

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ray.get_actor(name, namespace=namespace)
        except ValueError:
            if time.monotonic() > deadline:
                raise ValueError(f"no reward service named {name!r} in Ray namespace {namespace!r} "
                                 f"(start one with `editrl reward serve --name {name}`)") from None
            time.sleep(0.5)


def make_reward_client(spec: Any, *, device: str | None = None) -> RewardClientProtocol:
    """Build the reward client named by ``spec``; curation, RL and best-of-N call only this.

    - ``"ray://NAME"`` or ``"ray://NAME@ADDRESS"``: the Ray-served pool called NAME (ADDRESS of the cluster,
      default ``auto``);
    - a checkpoint folder: an in-process ``RewardScorer`` on ``device``;
    - an object that already has ``score_groups``: returned as it is.
    """
    if hasattr(spec, "score_groups"):
        return spec
    spec = str(spec)
    if spec.startswith(RAY_SCHEME):
        name, _, address = spec[len(RAY_SCHEME):].partition("@")
        return RewardClient.connect(name or DEFAULT_NAME, address or None)
    from reward.serve.scorer import RewardScorer

    return RewardScorer.from_checkpoint(spec, device=device)
