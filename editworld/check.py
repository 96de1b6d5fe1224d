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
    human = {d: [] for d in DIMENSIONS}
    for line, row in iter_jsonl(manifest, REQUIRED):
        task = _task(row, manifest, line)
        image = load_image(resolve_path(root, row["edited"]), manifest=manifest, line=line, field="edited")
        scores = oracle_scores(task, image)
        for d in DIMENSIONS:
            t, h = _ratings(row, d, manifest, line)
            true[d].append(t)
            human[d].extend(h)
            oracle[d].append(scores[d])
            if row["split"] == "bench":
                bench_ratings[d].append(h)
        n += 1
    if n == 0:
        raise DataError(manifest, "manifest has no rows")
    pairs = read_jsonl(root / "pairs.jsonl") if (root / "pairs.jsonl").is_file() else []
    report = {
        "candidates": n,
        "true_histogram": {d: _histogram(true[d]) for d in DIMENSIONS},
        "human_histogram": {d: _histogram(human[d]) for d in DIMENSIONS},
        "oracle_histogram": {d: _histogram(np.round(oracle[d])) for d in DIMENSIONS},
        "tie_rate": float(np.mean([p["tie"] for p in pairs])) if pairs else float("nan"),
        "annotator_agreement": {d: _agreement(bench_ratings[d]) for d in DIMENSIONS},
        "oracle_spearman": {d: float(spearmanr(true[d], oracle[d])[0]) for d in DIMENSIONS},
    }
    (root / "check.json").write_text(json.dumps(report, indent=1))
    _plot(report, oracle, true, root / "check_histograms.png")
    return report


def _task(row: dict, manifest: Path, line: int) -> Task:
    """The row's task, with its instruction checked against the grammar (errors name line and field)."""
    try:
        parse_instruction(row["instruction"])
    except (InstructionError, AttributeError) as err:
        raise DataError(manifest, str(err), line=line, field="instruction") from err
    try:
        return Task.from_dict(row["task"])
    except (InstructionError, KeyError, TypeError, ValueError) as err:
        raise DataError(manifest, f"not a task: {err}", line=line, field="task") from err


def _ratings(row: dict, dim: str, manifest: Path, line: int) -> tuple[int, list[int]]:
    """(true score, annotator ratings) of one dimension, each checked to be on the 1-4 rubric."""
    try:
        t = row["true_scores"][dim]
        if t not in (1, 2, 3, 4):
            raise ValueError(f"{t!r} is not a 1-4 score")
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(manifest, f"{dim}: {err}", line=line, field="true_scores") from err
    try:
        h = list(row["human_scores"][dim])
        if not h or any(v not in (1, 2, 3, 4) for v in h):
            raise ValueError(f"{h!r} is not a list of 1-4 scores")
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(manifest, f"{dim}: {err}", line=line, field="human_scores") from err
    return int(t), [int(v) for v in h]


def _histogram(values) -> dict[str, int]:
    v = np.asarray(values)
    return {str(s): int(np.sum(v == s)) for s in (1, 2, 3, 4)}


def _agreement(ratings: list[list[int]]) -> dict[str, float]:
    """Agreement of the benchmark split's annotators: exact agreement and Spearman over annotator pairs,
    and Krippendorff's alpha (interval metric; 1 = perfect, 0 = chance)."""
    if not ratings or len(ratings[0]) < 2:
        return {"exact": float("nan"), "spearman": float("nan"), "krippendorff_alpha": float("nan")}
    r = np.array(ratings, dtype=float)
    pairs = list(itertools.combinations(range(r.shape[1]), 2))
    return {"exact": float(np.mean([np.mean(r[:, a] == r[:, b]) for a, b in pairs])),
            "spearman": float(np.mean([spearmanr(r[:, a], r[:, b])[0] for a, b in pairs])),
            "krippendorff_alpha": krippendorff_alpha_interval(r)}


def krippendorff_alpha_interval(r: np.ndarray) -> float:
    """Krippendorff's alpha, interval metric, for a complete (items, raters) matrix: 1 - D_o / D_e with
    D_o the mean squared difference between ratings of the same item and D_e that over all ratings."""
    n_items, m = r.shape
    within = sum(((r[:, a] - r[:, b]) ** 2).sum() for a, b in itertools.permutations(range(m), 2))
    d_o = within / (n_items * m * (m - 1))
    values = r.reshape(-1)
    n = values.size
    d_e = (2 * n * (values ** 2).sum() - 2 * values.sum() ** 2) / (n * (n - 1))  # sum over ordered pairs
    return float(1.0 - d_o / d_e) if d_e > 0 else float("nan")


def _plot(report: dict, oracle: dict, true: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from editrl.report import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, d in zip(axes, DIMENSIONS):
        for s in (1, 2, 3, 4):
            vals = [o for o, t in zip(oracle[d], true[d]) if t == s]
            if vals:
                ax.hist(vals, bins=24, range=(1, 4), alpha=0.5, label=f"true {s}")
        ax.set_title(f"{d}: oracle by true score (rho={report['oracle_spearman'][d]:.2f})", fontsize=9)
        ax.legend(fontsize=7)
    save_figure(fig, path, dpi=100)
