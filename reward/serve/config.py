"""How a reward service is sized, placed and batched (``ServiceConfig``), how each replica builds its scorer
(``ScorerSpec``), and the token estimate the batcher packs requests by."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from reward.serve.client import DEFAULT_NAME, DEFAULT_NAMESPACE, EDIT, Unit

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
        from reward.serve.scorer import RewardScorer

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
