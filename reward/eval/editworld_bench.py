"""Reward-model evaluation on the editworld benchmark split (three-annotator labels), with baselines.

Building blocks the full evaluation suite reuses:

- ``load_bench_items(data_dir)`` — the bench candidates of an editworld dataset;
- ``human_pairs(items)`` — every within-group pair with its human label (+1 / -1 / 0 tie), from the
  annotators' mean score summed over dimensions;
- ``score_items(score_fn, items, cache)`` — scores per item, cached to / reused from a JSONL file so that
  metrics can be recomputed without re-scoring;
- scorers: ``model_scorer`` (a reward checkpoint, or a freshly initialised one = the untrained
  backbone with its heads), ``pixel_heuristic_scorer`` and ``random_scorer``;
- ``run_editworld_eval`` — what ``editrl reward eval`` prints.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from editrl.io import DataError, input_limits, iter_jsonl, load_image, resolve_path

MANIFEST_FIELDS = ("id", "group_id", "split", "source", "edited", "instruction", "human_scores")
ScoreFn = Callable[[Sequence["BenchItem"]], list[float]]


@dataclass(frozen=True)
class BenchItem:
    """One benchmark candidate: an edit of a source image, with every annotator's per-dimension scores."""

    id: str
    group_id: str
    source: str
    instruction: str
    edited: str
    human_scores: dict[str, list[float]]
    origin: str  # "manifest:line"

    @property
    def human_score(self) -> float:
        """Sum over dimensions of the annotators' mean score (the overall human judgement)."""
        return float(sum(np.mean(v) for v in self.human_scores.values()))


# ---- data ----------------------------------------------------------------------------------------

def load_bench_items(data_dir: str | Path, split: str = "bench",
                     rejects: list[DataError] | None = None) -> list[BenchItem]:
    """The candidates of an editworld dataset's ``split`` (default: the 3-annotator benchmark), each checked
    field by field (types, finite human scores, an instruction the reward model accepts, images that decode
    within ``editrl.io.InputLimits``). A bad row is a DataError naming file:line and field: raised, or, when
    ``rejects`` is a list, appended to it while the other rows are kept."""
    data_dir = Path(data_dir)
    manifest = data_dir / "manifest.jsonl" if data_dir.is_dir() else data_dir
    items = []
    checked: dict[str, str | None] = {}  # image path -> why it cannot be used (sources repeat within a group)
    for line, row in iter_jsonl(manifest, required=MANIFEST_FIELDS, rejects=rejects):
        try:
            if not isinstance(row["split"], str):
                raise DataError(manifest, f"expected a string, got {row['split']!r}", line=line, field="split")
            if row["split"] != split:
                continue
            items.append(_bench_item(manifest, line, row, checked))
        except DataError as err:
            if rejects is None:
                raise
            rejects.append(err)
    if not items:
        raise DataError(manifest, f"no usable items with split {split!r}"
                        + (f" ({len(rejects)} rows rejected; the first: {rejects[0]})" if rejects else ""))
    return items


def _bench_item(manifest: Path, line: int, row: dict[str, Any], checked: dict[str, str | None]) -> BenchItem:
    """One validated bench row (see ``load_bench_items``)."""
    import math

    from reward.model.inputs import InputError, check_instruction

    def bad(field: str, message: str) -> DataError:
        return DataError(manifest, message, line=line, field=field)

    for name in ("id", "group_id"):
        if isinstance(row[name], bool) or not isinstance(row[name], (str, int)):
            raise bad(name, f"expected a string or an integer, got {row[name]!r:.80}")
    hs = row["human_scores"]
    if not isinstance(hs, dict) or not hs or not all(isinstance(v, list) and v for v in hs.values()):
        raise bad("human_scores", f"expected {{dimension: [score, ...]}}, got {hs!r:.80}")
    for dim, values in hs.items():
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in values):
            raise bad("human_scores", f"dimension {dim!r}: expected finite numbers, got {values!r:.80}")
    try:
        instruction = check_instruction(row["instruction"])
    except InputError as err:
        raise bad("instruction", str(err).removeprefix("instruction: ")) from None
    n_bytes, max_tokens = len(instruction.encode("utf-8")), input_limits().max_instruction_tokens
    if n_bytes > max_tokens:  # no tokenizer before a model is loaded: a byte-level BPE token is >= 1 byte
        raise bad("instruction", f"instruction has {n_bytes:,} UTF-8 bytes and may exceed max_instruction_tokens = "
                                 f"{max_tokens:,} (EDITRL_MAX_INSTRUCTION_TOKENS)")
    paths = {}
    for name in ("source", "edited"):
        value = row[name]
        if not isinstance(value, str) or not value.strip() or "\x00" in value:
            raise bad(name, f"expected an image path, got {value!r:.80}")
        path = str(resolve_path(manifest.parent, value))
        if path not in checked:
            try:
                load_image(path, manifest=manifest, line=line, field=name)
                checked[path] = None
            except DataError as err:
                checked[path] = err.reason
        if checked[path] is not None:
            raise bad(name, checked[path])
        paths[name] = path
    return BenchItem(id=str(row["id"]), group_id=str(row["group_id"]), instruction=instruction, source=paths["source"],
                     edited=paths["edited"], human_scores={k: [float(x) for x in v] for k, v in hs.items()},
                     origin=f"{manifest}:{line}")


def human_pairs(items: Sequence[BenchItem]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first index, second index, human label in {+1, -1, 0}) for every pair within a group."""
    by_group: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_group.setdefault(it.group_id, []).append(i)
    first, second, label = [], [], []
    for idx in by_group.values():
        for i, j in itertools.combinations(idx, 2):
            d = items[i].human_score - items[j].human_score
            first.append(i), second.append(j), label.append(0 if abs(d) < 1e-9 else (1 if d > 0 else -1))
    return np.array(first, dtype=int), np.array(second, dtype=int), np.array(label, dtype=int)


def accuracy_non_tied(scores: Sequence[float], first: np.ndarray, second: np.ndarray, label: np.ndarray) -> tuple[float, int]:
    """Share of human-non-tied pairs whose score difference has the human sign (model ties count half)."""
    keep = label != 0
    if not keep.any():
        raise ValueError("no non-tied human pairs to evaluate")
    right = _pair_credit(scores, first, second, label)
    return float(right.mean()), int(keep.sum())


def _pair_credit(scores: Sequence[float], first: np.ndarray, second: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Per human-non-tied pair: 1 when the score difference has the human sign, 0.5 on a model tie, else 0."""
    s = np.asarray(scores, dtype=float)
    keep = label != 0
    diff = s[first[keep]] - s[second[keep]]
    return np.where(diff == 0, 0.5, (np.sign(diff) == label[keep]).astype(float))


GAP_EDGES = (0.1, 0.25, 0.5)  # rubric points of the per-dimension mean: near-ties, small, clear, large differences


def accuracy_by_gap(scores: Sequence[float], items: Sequence[BenchItem], first: np.ndarray, second: np.ndarray,
                    label: np.ndarray, edges: Sequence[float] = GAP_EDGES) -> list[dict[str, Any]]:
    """Non-tied pairwise accuracy split by how far apart the two human judgements are, to tell a reward that misses
    near-ties from one that misses clear differences. The gap is in rubric points of the mean over dimensions
    (``human_score`` / number of dimensions); bins are [0, e1), [e1, e2), ..., [e_last, inf). Empty bins get
    accuracy None."""
    keep = label != 0
    h = np.array([it.human_score / max(len(it.human_scores), 1) for it in items])
    gap = np.abs(h[first] - h[second])[keep]
    right = _pair_credit(scores, first, second, label)
    bounds = [0.0, *edges, float("inf")]
    out = []
    for low, high in zip(bounds, bounds[1:]):
        m = (gap >= low) & (gap < high)
        out.append({"low": low, "high": None if high == float("inf") else high, "pairs": int(m.sum()),
                    "accuracy": float(right[m].mean()) if m.any() else None})
    return out


# ---- scoring and its cache -------------------------------------------------------------------------

def score_items(score_fn: ScoreFn, items: Sequence[BenchItem], cache: str | Path | None = None) -> list[float]:
    """Scores of ``items`` by ``score_fn``; with ``cache`` read back when every id is there, else written."""
    if cache is not None and Path(cache).is_file():
        cached = {row["id"]: row["score"] for _, row in iter_jsonl(cache, required=("id", "score"))}
        if all(it.id in cached for it in items):
            return [float(cached[it.id]) for it in items]
    scores = [float(s) for s in score_fn(items)]
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        with Path(cache).open("w") as f:
            for it, s in zip(items, scores):
                f.write(json.dumps({"id": it.id, "group_id": it.group_id, "score": s}) + "\n")
    return scores


def _image(item: BenchItem, which: str):
    manifest, _, line = item.origin.rpartition(":")
    return load_image(getattr(item, which), manifest=manifest, line=int(line), field=which)


def model_gaussians(model: Any, processor: Any, model_cfg: Any, items: Sequence[BenchItem], batch_size: int = 64,
                    progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension (mu, log_sigma) of ``items`` by a reward model, each (N, D) float arrays (heads' order)."""
    import torch
    from tqdm.auto import tqdm

    from reward.official.inference import input_builder

    builder = input_builder(processor, model_cfg)  # editrl's format, or the official passes (inference: official)
    device = next(model.parameters()).device
    model.eval()
    mus, log_sigmas = [], []
    with torch.no_grad():
        for start in tqdm(range(0, len(items), batch_size), desc="scoring", disable=not progress, leave=False):
            chunk = items[start:start + batch_size]
            batch = builder([_image(it, "source") for it in chunk], [it.instruction for it in chunk],
                            [_image(it, "edited") for it in chunk])
            res = model(**batch.to(device))
            mus.append(res.mu.float().cpu().numpy()), log_sigmas.append(res.log_sigma.float().cpu().numpy())
    if not mus:
        return np.zeros((0, 0)), np.zeros((0, 0))
    return np.concatenate(mus), np.concatenate(log_sigmas)


def model_scorer(model: Any, processor: Any, model_cfg: Any, batch_size: int = 64, progress: bool = True) -> ScoreFn:
    """Score items with a reward model in batches: the aggregate ``mu`` (``model_cfg.aggregation``)."""

    def score(items: Sequence[BenchItem]) -> list[float]:
        import torch

        from reward.train.loss import aggregate

        mu, log_sigma = model_gaussians(model, processor, model_cfg, items, batch_size, progress)
        if not len(mu):
            return []
        return aggregate(torch.from_numpy(mu), torch.from_numpy(log_sigma), model_cfg.aggregation)[0].tolist()

    return score


def pixel_heuristic_scorer(items: Sequence[BenchItem]) -> list[float]:
    """A model-free baseline from source and edited pixels only: prefer a moderate amount of change.

    An edit should change *something* (a no-op fails the instruction) but not everything (over-editing,
    noise, colour casts change many pixels). Score = -|share of changed pixels - the bench median share|.
    """
    changed = []
    for it in items:
        src = np.asarray(_image(it, "source"), dtype=np.float32)
        edt = np.asarray(_image(it, "edited").resize(_image(it, "source").size), dtype=np.float32)
        changed.append(float((np.abs(edt - src).max(axis=-1) > 24).mean()))
    target = float(np.median(changed))
    return [-abs(c - target) for c in changed]


def random_scorer(seed: int = 0) -> ScoreFn:
    """Uniform random scores (the 50% floor)."""

    def score(items: Sequence[BenchItem]) -> list[float]:
        rng = random.Random(seed)
        return [rng.random() for _ in items]

    return score


# ---- the command ---------------------------------------------------------------------------------

def load_model_for_eval(checkpoint: str | Path) -> tuple[Any, Any, Any]:
    """(model, processor, model_cfg) from a reward checkpoint folder."""
    from reward.model.editreward import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    if isinstance(loaded, tuple):
        return loaded[0], loaded[1], loaded[2]
    return loaded.model, loaded.processor, loaded.config


def untrained_like(model_cfg: Any, seed: int = 0) -> tuple[Any, Any]:
    """A freshly initialised model of the same architecture: the untrained-backbone-with-heads baseline."""
    import torch

    from reward.train.trainer import build_model

    torch.manual_seed(seed)
    return build_model(model_cfg)


def run_editworld_eval(checkpoint: str | Path, data: str | Path, *, out_dir: str | Path | None = None,
                       batch_size: int = 64, baselines: bool = True, max_items: int | None = None,
                       progress: bool = True) -> dict[str, dict[str, float]]:
    """Pairwise accuracy (non-tied human pairs) of a checkpoint and the baselines; prints a table, writes JSON."""
    from rich.console import Console
    from rich.table import Table

    items = load_bench_items(data)
    if max_items is not None:
        groups = sorted({it.group_id for it in items})
        keep = set(groups[: max(1, max_items // max(1, len(items) // len(groups)))])
        items = [it for it in items if it.group_id in keep]
    first, second, label = human_pairs(items)
    out = Path(out_dir) if out_dir else Path(checkpoint) / "eval"
    model, processor, model_cfg = load_model_for_eval(checkpoint)
    methods: dict[str, ScoreFn] = {"reward model": model_scorer(model, processor, model_cfg, batch_size, progress)}
    if baselines:
        u_model, u_proc = untrained_like(model_cfg)
        methods["untrained backbone + heads"] = model_scorer(u_model, u_proc, model_cfg, batch_size, progress)
        methods["pixel-difference heuristic"] = pixel_heuristic_scorer
        methods["random"] = random_scorer(0)
    results: dict[str, dict[str, float]] = {}
    for name, fn in methods.items():
        cache = out / f"scores_{name.split()[0].replace('-', '_')}.jsonl"
        scores = score_items(fn, items, cache if name == "reward model" else None)
        acc, n = accuracy_non_tied(scores, first, second, label)
        results[name] = {"pairwise_accuracy": acc, "pairs": n}
    table = Table(title=f"editworld bench ({len(items)} candidates, {int((label != 0).sum())} non-tied pairs, "
                        f"{int((label == 0).sum())} tied)")
    table.add_column("method"), table.add_column("pairwise acc (non-tied)", justify="right")
    for name, r in results.items():
        table.add_row(name, f"{100 * r['pairwise_accuracy']:.2f}%")
    Console().print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "editworld_eval.json").write_text(json.dumps({"checkpoint": str(checkpoint), "data": str(data),
                                                         "results": results}, indent=1))
    return results


__all__ = ["BenchItem", "load_bench_items", "human_pairs", "accuracy_non_tied", "accuracy_by_gap", "GAP_EDGES",
           "score_items", "model_gaussians", "model_scorer", "pixel_heuristic_scorer", "random_scorer",
           "untrained_like", "run_editworld_eval"]
