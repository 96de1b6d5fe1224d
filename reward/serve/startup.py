"""Start, inspect and stop a reward service from a Ray driver (``RewardService``), and the Ray start-up helpers."""

from __future__ import annotations

from typing import Any

from reward.serve.client import DEFAULT_NAMESPACE, RewardClient, keep_ray_on_loopback
from reward.serve.config import ScorerSpec, ServiceConfig
from reward.serve.dispatcher import RewardDispatcher


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
            raise RuntimeError("call ray.init() (or reward.serve.startup.init_local_ray()) before RewardService.start")
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
    switches Ray's multi-node mode off (``reward.serve.client.keep_ray_on_loopback``); clients on this machine
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
