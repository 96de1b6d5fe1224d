"""Statistics of a generated editworld dataset: score histograms, tie rate, annotator agreement and the
oracle's agreement with the true scores. Reading also validates: a bad manifest line, an unreadable
image or an unknown instruction verb is a DataError naming file, line and field."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from editrl.io import DataError, iter_jsonl, load_image, read_jsonl, resolve_path
from editworld import DIMENSIONS
from editworld.instructions import InstructionError, parse_instruction
from editworld.oracle import oracle_scores
from editworld.tasks import Task

REQUIRED = ("id", "group_id", "split", "source", "edited", "instruction", "task", "true_scores", "human_scores")


def check_dataset(root: str | Path) -> dict:
    root = Path(root)
    manifest = root / "manifest.jsonl"
    true = {d: [] for d in DIMENSIONS}
    oracle = {d: [] for d in DIMENSIONS}
    bench_ratings = {d: [] for d in DIMENSIONS}
    n = 0
    for line, row in iter_jsonl(manifest, REQUIRED):
        try:
            parse_instruction(row["instruction"])
            task = Task.from_dict(row["task"])
        except (InstructionError, KeyError, TypeError) as err:
            field = "instruction" if isinstance(err, InstructionError) and "verb" in str(err) else "task"
            raise DataError(manifest, str(err), line=line, field=field) from err
        image = load_image(resolve_path(root, row["edited"]), manifest=manifest, line=line, field="edited")
        scores = oracle_scores(task, image)
        for d in DIMENSIONS:
            true[d].append(row["true_scores"][d])
            oracle[d].append(scores[d])
            if row["split"] == "bench":
                bench_ratings[d].append(row["human_scores"][d])
        n += 1
    if n == 0:
        raise DataError(manifest, "manifest has no rows")
    pairs = read_jsonl(root / "pairs.jsonl") if (root / "pairs.jsonl").is_file() else []
    report = {
        "candidates": n,
        "true_histogram": {d: {str(s): int(np.sum(np.array(true[d]) == s)) for s in (1, 2, 3, 4)} for d in DIMENSIONS},
        "tie_rate": float(np.mean([p["tie"] for p in pairs])) if pairs else float("nan"),
        "annotator_agreement": {d: _agreement(bench_ratings[d]) for d in DIMENSIONS},
        "oracle_spearman": {d: float(spearmanr(true[d], oracle[d])[0]) for d in DIMENSIONS},
    }
    (root / "check.json").write_text(json.dumps(report, indent=1))
    _plot(report, oracle, true, root / "check_histograms.png")
    return report


def _agreement(ratings: list[list[int]]) -> dict[str, float]:
    """Exact agreement and mean Spearman over annotator pairs (benchmark split, three annotators)."""
    if not ratings:
        return {"exact": float("nan"), "spearman": float("nan")}
    r = np.array(ratings)
    pairs = list(itertools.combinations(range(r.shape[1]), 2))
    return {"exact": float(np.mean([np.mean(r[:, a] == r[:, b]) for a, b in pairs])),
            "spearman": float(np.mean([spearmanr(r[:, a], r[:, b])[0] for a, b in pairs]))}


def _plot(report: dict, oracle: dict, true: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, d in zip(axes, DIMENSIONS):
        for s in (1, 2, 3, 4):
            vals = [o for o, t in zip(oracle[d], true[d]) if t == s]
            if vals:
                ax.hist(vals, bins=24, range=(1, 4), alpha=0.5, label=f"true {s}")
        ax.set_title(f"{d}: oracle by true score (rho={report['oracle_spearman'][d]:.2f})", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
