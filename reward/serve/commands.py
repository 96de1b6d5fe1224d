"""Handlers of ``editrl reward score``, ``editrl reward serve`` and ``editrl reward bench``.

Heavy imports (torch, transformers, ray) stay inside the functions so ``editrl --help`` stays light.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from editrl.config import ConfigError


def score(args: argparse.Namespace) -> int:
    """Print per-dimension mu and sigma and the aggregate score of each edited image (a rich table)."""
    from pathlib import Path

    import math

    from rich.table import Table

    from editrl.io import DataError
    from editrl.report import console as make_console
    from reward.serve.scorer import RewardScorer

    source = Path(args.source)
    if not source.is_file():
        raise DataError(source, "source image not found", field="--source")
    scorer = RewardScorer.from_checkpoint(args.checkpoint, device=args.device, batch_size=args.batch_size)
    results = scorer.score_group(str(source), args.instruction, [str(e) for e in args.edited])
    if getattr(args, "json", False):
        return _print_json(scorer, args.edited, results, probability_formula(args.checkpoint))

    table = Table(title=f"EditReward ({scorer.cfg.aggregation} of {len(scorer.dimensions)} dimensions): "
                        f"{args.instruction!r}")
    table.add_column("edited")
    for dim in scorer.dimensions:
        table.add_column(f"{dim} mu", justify="right")
        table.add_column(f"{dim} sigma", justify="right")
    table.add_column("score", justify="right", style="bold")
    table.add_column("score sigma", justify="right")
    failed = 0
    for path, res in zip(args.edited, results):
        if res.error is None and not (math.isfinite(res.score) and math.isfinite(res.score_sigma)):
            res.error = f"the reward model gave a non-finite score ({res.score}); its weights may be damaged"
        if res.error is not None:
            failed += 1
            table.add_row(str(path), *(["-"] * (2 * len(scorer.dimensions) + 2)))
            continue
        cells = []
        for dim in scorer.dimensions:
            cells += [f"{res.mu[dim]:.3f}", f"{res.sigma[dim]:.3f}"]
        table.add_row(str(path), *cells, f"{res.score:.3f}", f"{res.score_sigma:.3f}")
    console = make_console()
    console.print(table)
    formula = probability_formula(args.checkpoint)
    probs = pairwise_probabilities(scorer.dimensions, results, formula)
    if probs:
        names = [str(p) for p in args.edited]
        for key, matrix in probs.items():
            ptable = Table(title=f"P(row better than column), {key}")
            ptable.add_column("edited")
            for name in names:
                ptable.add_column(name, justify="right")
            for name, row in zip(names, matrix):
                ptable.add_row(name, *("-" if p is None else f"{p:.2f}" for p in row))
            console.print(ptable)
        console.print(PROBABILITY_NOTE[formula], markup=False)
    for path, res in zip(args.edited, results):
        if res.error is not None:
            console.print(f"[red]error[/red] {path}: {res.error}")
    return 1 if failed else 0


PROBABILITY_NOTE = {
    "thurstone": "P(a > b) = Phi((mu_a - mu_b) / sqrt(sigma_a^2 + sigma_b^2)) per dimension and on the aggregate score: "
                 "the likelihood this model was trained with (data.loss=probit), a calibrated probability.",
    "logistic": "P(a > b) = E[sigmoid(z)], z ~ N(mu_a - mu_b, sigma_a^2 + sigma_b^2), per dimension and on the aggregate "
                "score: the likelihood of the paper's loss (and of Bradley-Terry). Its sigma carries no information "
                "(it collapses towards 0 in training, docs/reward-training.md 'Uncertainty'), so this is "
                "sigmoid(mu_a - mu_b).",
}


def probability_formula(checkpoint: str | Path) -> str:
    """How to read P(a > b) off a checkpoint: "thurstone" for a model trained with the probit loss (its
    ``extra.json`` says so), else "logistic" (the paper's loss, Bradley-Terry, imported or unknown)."""
    from reward.model.editreward import EXTRA_NAME

    extra = Path(checkpoint) / EXTRA_NAME
    try:
        loss = json.loads(extra.read_text()).get("loss") if extra.is_file() else None
    except (OSError, ValueError, AttributeError):
        loss = None
    return "thurstone" if loss == "probit" else "logistic"


def pairwise_probabilities(dimensions: list[str], results: list,
                           formula: str = "thurstone") -> dict[str, list[list[float | None]]]:
    """For two or more scored edits of one source: the probability that edit i beats edit j by ``formula``
    (``reward.eval.calibration.pair_probability``), per dimension and for the aggregate score ({name: N x N
    matrix}, None on the diagonal and where an edit failed)."""
    import math

    import numpy as np

    from reward.eval.calibration import pair_probability

    ok = [r.error is None and math.isfinite(r.score) and math.isfinite(r.score_sigma) for r in results]
    if sum(ok) < 2:
        return {}
    columns = {d: ([r.mu[d] for r in results], [r.sigma[d] for r in results]) for d in dimensions}
    columns["score"] = ([r.score for r in results], [r.score_sigma for r in results])
    out = {}
    for key, (mu, sigma) in columns.items():
        mu_a, sd_a = np.asarray(mu, dtype=float), np.asarray(sigma, dtype=float)
        p = pair_probability(mu_a[:, None] - mu_a[None, :], np.sqrt(sd_a[:, None] ** 2 + sd_a[None, :] ** 2),
                             formula)
        out[key] = [[float(p[i, j]) if i != j and ok[i] and ok[j] else None for j in range(len(results))]
                    for i in range(len(results))]
    return out


def _print_json(scorer: Any, edited: list, results: list, formula: str) -> int:
    """``reward score --json``: one object per edited image (mu, sigma per dimension, score, score_sigma, error;
    NaN becomes null), printed as one JSON list on stdout for scripts. Exit 1 if any edit failed."""
    import math

    def num(x: float) -> float | None:
        return x if math.isfinite(x) else None

    rows = []
    for path, res in zip(edited, results):
        if res.error is None and not (math.isfinite(res.score) and math.isfinite(res.score_sigma)):
            res.error = f"the reward model gave a non-finite score ({res.score}); its weights may be damaged"
        rows.append({"edited": str(path), "mu": {d: num(v) for d, v in res.mu.items()},
                     "sigma": {d: num(v) for d, v in res.sigma.items()}, "score": num(res.score),
                     "score_sigma": num(res.score_sigma), "error": res.error})
    print(json.dumps({"aggregation": scorer.cfg.aggregation, "inference": scorer.cfg.inference, "edits": rows,
                      "probability_formula": formula,
                      "p_row_beats_column": pairwise_probabilities(scorer.dimensions, results, formula)}))
    return 1 if any(r["error"] for r in rows) else 0


def serve(args: argparse.Namespace) -> int:
    """Start the reward pool on a local Ray (loopback only, no dashboard) or on the cluster at ``--address``."""
    from rich.table import Table

    from editrl.report import console as make_console
    from reward.serve.config import ScorerSpec, ServiceConfig
    from reward.serve.startup import RewardService, init_local_ray

    if not Path(args.checkpoint).is_dir():
        from editrl.io import DataError

        raise DataError(args.checkpoint, "reward checkpoint directory not found")
    cfg = ServiceConfig(
        name=args.name, replicas=args.replicas, num_gpus=args.num_gpus, num_cpus=args.num_cpus,
        placement_strategy=args.placement, detached=args.detached, max_batch_edits=args.max_batch_edits,
        max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms, max_queue_edits=args.max_queue_edits,
        metrics_dir=args.metrics_dir, metrics_interval_s=args.metrics_interval, image_area=_checkpoint_image_area(args.checkpoint),
        image_patch=_checkpoint_token_side(args.checkpoint),
    ).validate()
    if args.detached and not args.address:
        raise ConfigError("reward serve: --detached needs --address (a local Ray ends with this process)")
    init_local_ray(args.address)
    device = args.device or ("cuda" if args.num_gpus > 0 else "cpu")
    service = RewardService.start(ScorerSpec(checkpoint=str(args.checkpoint), device=device), cfg)
    console = make_console()
    table = Table(title=f"reward service {cfg.name!r}: {cfg.replicas} replicas ({cfg.placement_strategy})")
    for col in ("replica", "pid", "gpu ids", "node"):
        table.add_column(col)
    for i, info in enumerate(service.replica_info):
        table.add_row(str(i), str(info.get("pid")), ",".join(info.get("gpu_ids", [])) or "-", str(info.get("node_id", ""))[:12])
    console.print(table)
    from reward.serve.startup import cluster_address, node_ip_address

    address = cluster_address()
    console.print(f"Ray node address: {node_ip_address()}; cluster (GCS) address: {address}")
    console.print(f"clients: --reward ray://{cfg.name}@{address} (editrl curate, best-of-n, a policy config's "
                  f"reward), or editrl best-of-n --service {cfg.name} --ray-address {address}")
    if args.detached:
        return 0
    import signal

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops it like Ctrl-C: replicas shut down
    try:
        while True:
            time.sleep(args.metrics_interval)
            s = service.stats()
            console.print(f"queue {s['queue_depth_edits']:>4}  waiting {s['waiting_callers']:>3}  "
                          f"edits/s {s['edits_per_s']:.1f}  batches {s['batches']}  mean batch {s['batch_edits_mean']:.1f}  "
                          f"restarts {s['replicas_restarted_by_ray'] + s['replicas_recreated']}")
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        service.shutdown()
    return 0


def _checkpoint_image_area(checkpoint: str) -> int | None:
    """Pixels per image the checkpoint's processor resizes to (for the batcher's token estimate)."""
    path = Path(checkpoint) / "reward_config.yaml"
    if not path.is_file():
        return None
    from editrl.config import load_config
    from reward.model.config import RewardModelConfig

    return load_config(RewardModelConfig, path, []).pixel_area


def _checkpoint_token_side(checkpoint: str) -> int:
    """Pixels per visual-token side of the checkpoint's backbone (patch size x spatial merge; 28 if unknown)."""
    import json

    path = Path(checkpoint) / "backbone_config.json"
    if not path.is_file():
        return 28
    vision = json.loads(path.read_text()).get("vision_config", {})
    return int(vision.get("patch_size", 14)) * int(vision.get("spatial_merge_size", 2))


def bench(args: argparse.Namespace) -> int:
    """Official-style vs one-pass vs shared-prefix reward inference, side by side on one model."""
    import torch

    from reward.serve.throughput import bench_inputs, build_bench_scorer, print_result, run_bench

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.full_shapes and args.device != "cuda":
        raise ConfigError("reward bench: --full-shapes builds a 7B-parameter model: use --device cuda")
    if args.repeats < 1:
        raise ConfigError(f"reward bench: --repeats must be >= 1, got {args.repeats}")
    image_size = args.image_size or (448 if args.full_shapes else 64)
    scorer, label = build_bench_scorer(args.checkpoint, device=args.device, full_shapes=args.full_shapes,
                                       batch_size=args.batch_size)
    groups = bench_inputs(args.items, image_size, seed=args.seed)
    print(f"benchmarking {label} on {args.device}: {args.items} edits, {image_size}x{image_size} images", flush=True)
    result = run_bench(scorer, groups, group_sizes=tuple(args.group_sizes), label=label, device=args.device,
                       repeats=args.repeats)
    if args.ray_replicas:
        from reward.serve.throughput import run_service_rows

        mode = scorer.cfg.inference
        del scorer  # the replicas build their own copy of the same model
        run_service_rows(result, groups, replicas=args.ray_replicas, num_gpus=1.0 if args.device == "cuda" else 0.0,
                         callers=args.ray_callers, group_size=8, batch_size=args.batch_size, mode=mode,
                         scorer_kwargs=dict(checkpoint=args.checkpoint, device=args.device,
                                            full_shapes=args.full_shapes, batch_size=args.batch_size))
    print_result(result)
    data = result.to_dict()
    data.update({"image_size": image_size, "batch_size": args.batch_size, "torch_threads": torch.get_num_threads()})
    print(json.dumps(data))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(data, indent=2))
    return 0
