"""Benchmarks as units to score, the score files of the evaluation suite, and the metrics computed from them.

``load_bench`` turns a benchmark into unique (source, instruction, edited) units plus one row per item;
``write_scores`` fills each row's ``scores`` and writes ``OUT/scores/<method>/<bench>.jsonl``; ``read_scores`` and
``bench_metrics`` recompute every metric from such a file alone (``reward eval --from-scores``).

Score files are self-contained (one JSON object per benchmark item, the human judgement included):

* ``genai`` / ``aurora`` (pairs):  ``{"item": i, "scores": [s_first, s_second], "label": 1 | -1 | 0}``
* ``imagenhub`` / ``aurora_point`` (point-wise):
  ``{"item": i, "scores": [s], "model": "editor", "human_scores": [r1, r2, r3], "prompt": "..."}``
* ``editreward`` (K-way groups):  ``{"item": i, "scores": [s_A, s_B, ...], "ranking": "C>A>B",
  "official_ranking": "A=B=Good"}`` (the label as written; older files without it fall back to ``ranking``)
* ``editworld`` (bench split):    ``{"item": id, "scores": [s], "group_id": g, "human_scores": {dim: [..]}}``

Metrics (``reward.eval.metrics``): GenAI / AURORA pairwise accuracy with ties (tie-calibrated, eps reported) and
without; ImagenHub Spearman-Fisher mean over editing models beside the human-to-human upper bound;
EditReward-Bench strict group accuracy for K = 2, 3, 4 and overall, with the eps that maximises the
tie-calibrated accuracy on the bench's own within-group pairs; editworld non-tied pairwise accuracy.
The position-bias check (paper A.8) reruns every pairwise bench with the pair order swapped.
Beside them, each bench's ``official`` entry holds what the official ``eval_bench.py`` computes from the same scores
(``reward.eval.official_protocol``).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from editrl.config import ConfigError
from editrl.io import DataError, iter_jsonl

BENCHES = ("genai", "aurora", "aurora_point", "imagenhub", "editreward", "editworld")
POINT_BENCHES = ("imagenhub", "aurora_point")


# ---- benchmark loading: units to score and how they map back to items ------------------------------

@dataclass
class LoadedBench:
    """A benchmark as unique (source, instruction, edited) units to score plus per-item rows to fill."""

    name: str
    path: str
    units: list[Any]                      # reward.eval.editworld_bench.BenchItem, one per distinct edit
    rows: list[dict[str, Any]]            # the score-file rows without "scores"
    unit_index: list[list[int]]           # per row: which units make its "scores"
    meta: dict[str, Any] = field(default_factory=dict)


def _units_builder(path: str):
    from reward.eval.editworld_bench import BenchItem

    units: list[BenchItem] = []
    seen: dict[tuple[str, str, str], int] = {}

    def unit(source: str, instruction: str, edited: str, where: int, group: str, human: dict | None = None) -> int:
        key = (source, instruction, edited)
        if human is None and key in seen:
            return seen[key]
        units.append(BenchItem(id=str(len(units)), group_id=group, source=source, instruction=instruction,
                               edited=edited, human_scores=human or {}, origin=f"{path}:{where}"))
        seen[key] = len(units) - 1
        return len(units) - 1

    return units, unit


def load_bench(name: str, path: str | Path, image_root: str | Path | None = None,
               max_items: int | None = None) -> LoadedBench:
    """Load one benchmark (``name`` canonical: genai, aurora, imagenhub, editreward, editworld)."""
    from reward.eval import loaders as B

    path = Path(path)
    units, unit = _units_builder(str(path))
    rows: list[dict[str, Any]] = []
    index: list[list[int]] = []
    meta: dict[str, Any] = {}
    if name in ("genai", "aurora"):
        items = (B.load_genai_bench_edit if name == "genai" else B.load_aurora_bench)(path, image_root)[:max_items]
        for i, it in enumerate(items):
            index.append([unit(it.source, it.instruction, it.first, i + 1, str(i)),
                          unit(it.source, it.instruction, it.second, i + 1, str(i))])
            rows.append({"item": i, "label": it.label})
    elif name in POINT_BENCHES:
        load = B.load_imagenhub if name == "imagenhub" else B.load_aurora_pointwise
        for i, it in enumerate(load(path, image_root)[:max_items]):
            index.append([unit(it.source, it.instruction, it.edited, i + 1, it.model_name)])
            rows.append({"item": i, "model": it.model_name, "human_scores": list(it.human_scores),
                         "prompt": it.instruction})
    elif name == "editreward":
        groups = B.load_editreward_bench(path, image_root, rejects=meta.setdefault("rejects", []))
        for i, it in enumerate(groups[:max_items]):
            index.append([unit(it.source, it.instruction, c, i + 1, str(i)) for c in it.candidates])
            rows.append({"item": i, "ranking": it.ranking, "official_ranking": it.official_ranking})
    elif name == "editworld":
        from reward.eval.editworld_bench import load_bench_items

        items = load_bench_items(path, rejects=meta.setdefault("rejects", []))  # bad rows skipped, reported
        if max_items is not None:  # whole groups, as run_editworld_eval does
            groups = sorted({it.group_id for it in items})
            keep = set(groups[: max(1, max_items // max(1, len(items) // len(groups)))])
            items = [it for it in items if it.group_id in keep]
        units[:] = items
        for i, it in enumerate(items):
            index.append([i])
            rows.append({"item": it.id, "group_id": it.group_id, "human_scores": it.human_scores})
    else:
        raise ConfigError(f"unknown benchmark {name!r}; expected one of {', '.join(BENCHES)}")
    return LoadedBench(name, str(path), units, rows, index, meta)


# ---- score files ---------------------------------------------------------------------------------

def write_scores(path: Path, bench: LoadedBench, unit_scores: Sequence[float]) -> list[dict[str, Any]]:
    """Fill each row's ``scores`` from the unit scores and write the JSONL; returns the rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for row, idx in zip(bench.rows, bench.unit_index):
        rows.append({**row, "scores": [float(unit_scores[u]) for u in idx]})
    with path.open("w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return rows


def read_scores(path: Path, bench: str) -> list[dict[str, Any]]:
    """Rows of a score file, checked for what ``bench``'s metrics need."""
    need = {"genai": ("scores", "label"), "aurora": ("scores", "label"), "imagenhub": ("scores", "model", "human_scores"),
            "aurora_point": ("scores", "model", "human_scores"), "editreward": ("scores", "ranking"),
            "editworld": ("scores", "group_id", "human_scores")}[bench]
    rows = []
    for line, row in iter_jsonl(path, required=need):
        s = row["scores"]
        if not isinstance(s, list) or not s or not all(isinstance(x, (int, float)) and np.isfinite(x) for x in s):
            raise DataError(path, f"expected a list of finite scores, got {s!r}", line=line, field="scores")
        want = {"genai": 2, "aurora": 2, "imagenhub": 1, "aurora_point": 1, "editworld": 1}.get(bench)
        if want is not None and len(s) != want:
            raise DataError(path, f"expected {want} score(s) for a {bench} item, got {len(s)}", line=line, field="scores")
        rows.append(row)
    if not rows:
        raise DataError(path, "no scored items in this file")
    return rows


# ---- metrics from score rows ---------------------------------------------------------------------

def _pair_metrics(diff: np.ndarray, label: np.ndarray) -> dict[str, Any]:
    from reward.eval.metrics import pairwise_accuracy, pairwise_accuracy_with_ties, position_bias

    acc_ties, eps = pairwise_accuracy_with_ties(diff, label)
    out: dict[str, Any] = {"accuracy_with_ties": acc_ties, "eps": eps, "pairs": int(diff.size),
                           "human_ties": int((label == 0).sum())}
    keep = label != 0
    if keep.any():
        out["accuracy"] = pairwise_accuracy(diff, label)
        # judge(a, b) = score(a) - score(b): a point-wise scorer sees the same two scores in either order
        pb = position_bias(lambda a, b: a - b, [(float(d), 0.0, int(lab)) for d, lab in zip(diff[keep], label[keep])])
        out["position_bias"] = pb.to_dict()
    else:
        out["accuracy"] = None
    return out


def _pairs_from_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from reward.eval.official_protocol import official_score, pair_bench

    s = np.array([r["scores"] for r in rows], dtype=float)
    label = np.sign(np.array([float(r["label"]) for r in rows]))
    out = _pair_metrics(s[:, 0] - s[:, 1], label)
    official = np.array([[official_score(x) for x in r["scores"]] for r in rows])
    out["official"] = pair_bench(label.astype(int).tolist(), (official[:, 0] - official[:, 1]).tolist())
    return out


def _point_from_rows(rows: list[dict[str, Any]], bench: str) -> dict[str, Any]:
    """editrl: Fisher-z mean of the per-model Spearman (+ the human bound); official: eval_bench.py's averages."""
    from reward.eval import official_protocol as official
    from reward.eval.loaders import PointItem, imagenhub_groups, imagenhub_human_upper_bound
    from reward.eval.metrics import spearman_fisher_mean

    items = [PointItem("", "", "", str(r["model"]), tuple(float(x) for x in r["human_scores"])) for r in rows]
    pred = [r["scores"][0] for r in rows]
    out: dict[str, Any] = {"items": len(rows), "editing_models": len({it.model_name for it in items})}
    try:
        out["spearman"] = spearman_fisher_mean(imagenhub_groups(items, pred))
    except ValueError as err:
        out["spearman"], out["spearman_error"] = None, str(err)
    if bench == "imagenhub":
        try:
            out["human_upper_bound"] = imagenhub_human_upper_bound(items)
        except ValueError as err:
            out["human_upper_bound"], out["human_upper_bound_error"] = None, str(err)
    models, human = [it.model_name for it in items], [it.human_score for it in items]
    by_model = (official.imagenhub_v1 if bench == "imagenhub" else official.aurora_pointwise)(models, pred, human)
    out["official"] = {"average": by_model.pop("average"), "by_model": by_model}
    if bench == "imagenhub" and all("prompt" in r for r in rows):
        out["official"]["v2"] = official.imagenhub_v2([str(r["prompt"]) for r in rows], pred, human)
    out["official"] = _nan_to_none(out["official"])  # where the official run prints nan
    return out


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    return None if isinstance(value, float) and not np.isfinite(value) else value


def _official_label(row: dict[str, Any]) -> str | None:
    """The label the official protocol parses; a score file written before ``official_ranking`` has only the
    normalised ``ranking``, whose two-way tie ``"A=B"`` the official labels write ``"A=B=Good"``."""
    if row.get("official_ranking") is not None:
        return str(row["official_ranking"])
    return "A=B=Good" if row["ranking"] == "A=B" else row["ranking"]


def _editreward_from_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from reward.eval.metrics import pairwise_accuracy_with_ties, parse_ranking, strict_group_accuracy, strict_group_accuracy_by_k
    from reward.eval.official_protocol import editreward_bench

    scores = [r["scores"] for r in rows]
    rankings = [r["ranking"] for r in rows]
    diffs, labels = [], []
    for g, (s, ranking) in enumerate(zip(scores, rankings)):
        try:
            levels = parse_ranking(ranking, len(s))
        except ValueError as err:
            raise DataError("editreward scores", f"item {g}: {err}", field="ranking") from None
        for i, j in itertools.combinations(range(len(s)), 2):
            diffs.append(s[i] - s[j])
            labels.append((levels[i] < levels[j]) - (levels[i] > levels[j]))
    acc_ties, eps = pairwise_accuracy_with_ties(diffs, labels)
    by_k = strict_group_accuracy_by_k(scores, rankings, eps)
    official = editreward_bench([(_official_label(r), r["scores"]) for r in rows])
    return {"eps": eps, "pairwise_accuracy_with_ties": acc_ties, "groups": len(rows),
            "groups_by_k": {str(k): sum(len(s) == k for s in scores) for k in by_k},
            "by_k": {str(k): v for k, v in by_k.items()}, "overall": strict_group_accuracy(scores, rankings, eps),
            "official": {**official["results"], "optimal_epsilon_2pair": official["optimal_epsilon"]}}


def _editworld_from_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from reward.eval.editworld_bench import BenchItem, accuracy_by_gap, accuracy_non_tied, human_pairs
    from reward.eval.metrics import position_bias

    items = [BenchItem(id=str(r["item"]), group_id=str(r["group_id"]), source="", instruction="", edited="",
                       human_scores={k: [float(x) for x in v] for k, v in r["human_scores"].items()}, origin="")
             for r in rows]
    first, second, label = human_pairs(items)
    s = np.array([r["scores"][0] for r in rows], dtype=float)
    acc, n = accuracy_non_tied(s, first, second, label)
    keep = label != 0
    pb = position_bias(lambda a, b: a - b, [(s[i], s[j], int(lab)) for i, j, lab in
                                            zip(first[keep], second[keep], label[keep])])
    return {"accuracy": acc, "pairs": n, "human_ties": int((~keep).sum()), "position_bias": pb.to_dict(),
            "by_gap": accuracy_by_gap(s, items, first, second, label)}


def bench_metrics(bench: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """All metrics of one method on one benchmark, from its score rows."""
    if bench in ("genai", "aurora"):
        return _pairs_from_rows(rows)
    if bench in POINT_BENCHES:
        return _point_from_rows(rows, bench)
    if bench == "editreward":
        return _editreward_from_rows(rows)
    return _editworld_from_rows(rows)


__all__ = ["BENCHES", "POINT_BENCHES", "LoadedBench", "load_bench", "write_scores", "read_scores", "bench_metrics"]
