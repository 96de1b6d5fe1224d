"""The one reward client that curation, online RL and best-of-N call.

Anything with ``score_groups(groups) -> list[list[ScoredEdit]]`` (and ``score(list[EditInput])``) is a
reward client: the in-process ``reward.serve.scorer.RewardScorer``, or ``RewardClient``, which talks to the
Ray-served pool started by ``editrl reward serve`` (``reward.serve.startup``). ``make_reward_client(spec)``
picks one from a string, so callers never branch on how the reward model is hosted.

The wire format between client, dispatcher and replicas is a list of *units*: ``("edit", EditInput)``
for a single edit, ``("group", (source, instruction, [edited, ...]))`` for candidates sharing a prefix.

Every wait on Ray is bounded: joining the cluster and finding the service by name within ``connect_timeout_s``
(``EDITRL_RAY_CONNECT_TIMEOUT_S``, default 30 s; an explicit ADDRESS is first probed over TCP), each request
within ``request_timeout_s`` (``EDITRL_RAY_REQUEST_TIMEOUT_S``, default 600 s). Failing that, a
``RewardServiceError`` names the address or service and how to start one.
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
CONNECT_TIMEOUT_ENV, REQUEST_TIMEOUT_ENV = "EDITRL_RAY_CONNECT_TIMEOUT_S", "EDITRL_RAY_REQUEST_TIMEOUT_S"
Unit = tuple[str, Any]
Group = tuple[Any, str, Sequence[Any]]


class RewardServiceError(ConnectionError):
    """The reward service cannot be reached: no Ray cluster at the address, no service of that name, or no answer
    in time. The message names what was tried and how to start a service."""


def _timeout(env: str, default: float) -> float:
    text = os.environ.get(env, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        from editrl.config import ConfigError

        raise ConfigError(f"environment variable {env}={text!r}: expected a number of seconds > 0")
    return value


def default_connect_timeout_s() -> float:
    """Seconds a client waits to join a Ray cluster and find the service (``EDITRL_RAY_CONNECT_TIMEOUT_S``)."""
    return _timeout(CONNECT_TIMEOUT_ENV, 30.0)


def default_request_timeout_s() -> float:
    """Seconds a client waits for one request's answer (``EDITRL_RAY_REQUEST_TIMEOUT_S``)."""
    return _timeout(REQUEST_TIMEOUT_ENV, 600.0)


def _start_hint(name: str) -> str:
    return (f"start one with `editrl reward serve --checkpoint CKPT --name {name}` (it prints the ray://NAME@ADDRESS "
            f"to pass), or score in-process with --reward CKPT")


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
                 chunk_edits: int = 64, max_outstanding: int = 8, retries: int = 3,
                 request_timeout_s: float | None = None) -> None:
        self._dispatcher = dispatcher
        self.name, self.namespace = name, namespace
        self.chunk_edits, self.max_outstanding, self.retries = chunk_edits, max_outstanding, retries
        self.request_timeout_s = request_timeout_s if request_timeout_s is not None else default_request_timeout_s()

    @classmethod
    def connect(cls, name: str = DEFAULT_NAME, address: str | None = None, *, namespace: str = DEFAULT_NAMESPACE,
                timeout_s: float | None = None, **kwargs: Any) -> "RewardClient":
        """Attach to a running reward service by name (joins the Ray cluster at ``address``, default ``auto``);
        a RewardServiceError within ``timeout_s`` (default ``default_connect_timeout_s()``) if there is none."""
        import ray

        timeout_s = default_connect_timeout_s() if timeout_s is None else float(timeout_s)
        if not ray.is_initialized():
            if address not in (None, "auto"):
                _probe(address, name, timeout_s)
            if _is_loopback(address):
                keep_ray_on_loopback()
                _use_local_auth_token()
            _init_within(address or "auto", namespace, name, timeout_s)
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
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.request_timeout_s)
            if not ready:
                raise RewardServiceError(f"reward service {self.name!r}: no answer within {self.request_timeout_s:g} s "
                                         f"(set {REQUEST_TIMEOUT_ENV} to wait longer)")
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
            except (ray.exceptions.RayActorError, RewardServiceError) as err:
                last = err
        raise RewardServiceError(f"reward service {self.name!r} unreachable after {self.retries} retries; "
                                 + _start_hint(self.name)) from last


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
                raise RewardServiceError(f"no reward service named {name!r} in Ray namespace {namespace!r} after "
                                         f"{timeout_s:g} s; " + _start_hint(name)) from None
            time.sleep(0.5)


def _probe(address: str, name: str, timeout_s: float) -> None:
    """Fail fast when nothing listens at ``host:port`` (Ray itself would retry for minutes)."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=min(timeout_s, 10.0)).close()
    except OSError as err:
        raise RewardServiceError(f"no Ray cluster at {address} ({err.strerror or err}); " + _start_hint(name)) from None


_ABANDONED_INITS: list = []  # ray.init threads given up on, still blocked inside Ray's core


def abandoned_ray_init() -> bool:
    """Whether a ``ray.init`` was given up on and still runs: the process must then end with ``os._exit``, as Ray's
    core aborts (std::bad_alloc) when the interpreter shuts down around the blocked thread."""
    return any(t.is_alive() for t in _ABANDONED_INITS)


def _init_within(address: str, namespace: str, name: str, timeout_s: float) -> None:
    """``ray.init`` that gives up after ``timeout_s`` (it blocks for minutes on an address that does not answer)."""
    import threading

    import ray

    box: dict[str, BaseException] = {}

    def join() -> None:
        try:
            ray.init(address=address, namespace=namespace, log_to_driver=False)
        except BaseException as err:  # handed to the caller's thread
            box["error"] = err

    worker = threading.Thread(target=join, name="ray-init", daemon=True)
    worker.start()
    worker.join(timeout_s)
    where = "on this machine (address auto)" if address == "auto" else f"at {address}"
    if worker.is_alive():
        _ABANDONED_INITS.append(worker)
        raise RewardServiceError(f"no answer from a Ray cluster {where} within {timeout_s:g} s (set "
                                 f"{CONNECT_TIMEOUT_ENV} to wait longer); " + _start_hint(name))
    if "error" in box:
        err = box["error"]
        if isinstance(err, (ConnectionError, ValueError, RuntimeError, TimeoutError)):
            raise RewardServiceError(f"no Ray cluster {where}: {err}; " + _start_hint(name)) from err
        raise err


def make_reward_client(spec: Any, *, device: str | None = None) -> RewardClientProtocol:
    """Build the reward client named by ``spec``; curation, RL and best-of-N call only this.

    - ``"ray://NAME"`` or ``"ray://NAME@ADDRESS"``: the Ray-served pool called NAME (ADDRESS of the cluster,
      default ``auto``);
    - a checkpoint folder: an in-process ``RewardScorer`` on ``device``;
    - ``"ensemble:SPEC1,SPEC2,..."``: a ``reward.serve.ensemble.RewardEnsemble`` of those members;
    - an object that already has ``score_groups``: returned as it is.
    """
    if hasattr(spec, "score_groups"):
        return spec
    spec = str(spec)
    from reward.serve.ensemble import ENSEMBLE_SCHEME, RewardEnsemble, parse_ensemble_spec

    if spec.startswith(ENSEMBLE_SCHEME):
        members = parse_ensemble_spec(spec)
        return RewardEnsemble([make_reward_client(m, device=device) for m in members], names=members)
    if spec.startswith(RAY_SCHEME):
        name, _, address = spec[len(RAY_SCHEME):].partition("@")
        return RewardClient.connect(name or DEFAULT_NAME, address or None)
    from reward.serve.scorer import RewardScorer

    return RewardScorer.from_checkpoint(spec, device=device)
