"""Apply a selection to a scored run and write its outputs.

- ``kept.jsonl``: the kept rows in the input's own format (image paths rewritten relative to the output
  folder so the file works where it lies), plus ``reward`` = {mu, sigma, score, score_sigma, rank_key};
- ``all_scored.jsonl``: every scored row in the same format, with ``kept`` true/false;
- ``summary.json``: counts (total, scored, rejected, kept), the rule and the cut, score statistics;
- ``histograms.png``: per-dimension mu and ranking-key histograms, kept rows highlighted, cuts marked;
- ``extremes.png``: the K lowest and K highest ranked examples (source | edited, instruction as caption).

Everything streams over ``scores.jsonl``; memory holds K examples for the grid and one float per row and
dimension for the statistics and histograms.
"""

from __future__ import annotations

import heapq
import json
import os
import textwrap
from array import array
from pathlib import Path
from typing import Any

from curation.config import SelectionConfig
from curation.scoring import EDITRL_FIELDS, FOLDER_ALIASES, REJECTS, iter_scores
from curation.select import Cut, is_kept, ranking_key, select_stream
from editrl.io import resolve_path, temp_path, write_text_atomic

IMAGE_FIELDS = tuple(dict.fromkeys(EDITRL_FIELDS["source"] + EDITRL_FIELDS["edited"] + FOLDER_ALIASES["source"]
                                   + FOLDER_ALIASES["edited"]))


def output_row(score_row: dict[str, Any], manifest_dir: Path, out_dir: Path, key: float) -> dict[str, Any]:
    """The input row with its image paths made valid from ``out_dir`` and the reward scores attached."""
    row = dict(score_row["row"])
    for name in IMAGE_FIELDS:
        if isinstance(row.get(name), str):
            row[name] = os.path.relpath(os.path.abspath(resolve_path(manifest_dir, row[name])), os.path.abspath(out_dir))
    row["reward"] = dict(score_row["reward"], rank_key=key)
    return row


def _stats(values: array) -> dict[str, float]:
    import numpy as np

    if len(values) == 0:
        return {"n": 0}
    v = np.frombuffer(values, dtype=np.float32).astype(np.float64)
    q = np.quantile(v, [0.1, 0.5, 0.9])
    return {"n": int(v.size), "mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "p10": float(q[0]), "median": float(q[1]), "p90": float(q[2]), "max": float(v.max())}


def _count_lines(path: Path) -> int:
    if not path.is_file():
        return 0
    with path.open("rb") as f:
        return sum(1 for raw in f if raw.strip())


def write_outputs(out_dir: str | Path, manifest: str | Path, rule: SelectionConfig, grid_k: int = 8) -> dict[str, Any]:
    """Select from ``out_dir/scores.jsonl`` with ``rule`` and write every output; returns the summary."""
    out_dir, manifest_dir = Path(out_dir), Path(manifest).parent
    cut, n_scored = select_stream(lambda: iter_scores(out_dir), rule)
    dims: list[str] = []
    values: dict[str, array] = {}
    kept_values: dict[str, array] = {}
    lowest: list[tuple[float, int, dict[str, Any]]] = []  # max-heap by negated key
    highest: list[tuple[float, int, dict[str, Any]]] = []
    n_kept = 0
    kept_tmp, all_tmp = temp_path(out_dir / "kept.jsonl"), temp_path(out_dir / "all_scored.jsonl")
    with kept_tmp.open("w") as kept_f, all_tmp.open("w") as all_f:
        for score_row in iter_scores(out_dir):
            key = ranking_key(score_row, rule.uncertainty_k)
            kept = is_kept(score_row, rule, cut)
            row = output_row(score_row, manifest_dir, out_dir, key)
            if kept:
                kept_f.write(json.dumps(row, sort_keys=True) + "\n")
                n_kept += 1
            all_f.write(json.dumps(dict(row, kept=kept), sort_keys=True) + "\n")
            if not dims:
                dims = list(score_row["reward"]["mu"])
                for name in dims + ["rank_key"]:
                    values[name], kept_values[name] = array("f"), array("f")
            for name in dims + ["rank_key"]:
                v = key if name == "rank_key" else score_row["reward"]["mu"][name]
                values[name].append(v)
                if kept:
                    kept_values[name].append(v)
            if grid_k > 0:
                _push(lowest, (-key, score_row["line"], row), grid_k)
                _push(highest, (key, -score_row["line"], row), grid_k)
    os.replace(kept_tmp, out_dir / "kept.jsonl")  # each output appears whole or not at all
    os.replace(all_tmp, out_dir / "all_scored.jsonl")
    n_rejected = _count_lines(out_dir / REJECTS)
    summary = {"total": n_scored + n_rejected, "scored": n_scored, "rejected": n_rejected, "kept": n_kept,
               "selection": {"top_k": rule.top_k, "top_fraction": rule.top_fraction, "threshold": rule.threshold,
                             "min_dims": rule.min_dims, "uncertainty_k": rule.uncertainty_k},
               "cut": None if cut is None else {"rank_key": cut.key, "line": cut.line},
               "scores": {name: _stats(values[name]) for name in values},
               "kept_scores": {name: _stats(kept_values[name]) for name in kept_values}}
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=1, sort_keys=True))
    if values:
        plot_histograms(values, kept_values, rule, cut, out_dir / "histograms.png")
    if lowest:
        low = [r for *_, r in sorted(lowest, key=lambda t: t[:2], reverse=True)]
        high = [r for *_, r in sorted(highest, key=lambda t: t[:2], reverse=True)]
        plot_extremes(low, high, out_dir, out_dir / "extremes.png")
    return summary


def _push(heap: list, item: tuple, k: int) -> None:
    """Keep the k largest items by their first two fields (unique per row) in a min-heap."""
    if len(heap) < k:
        heapq.heappush(heap, item)
    elif item[:2] > heap[0][:2]:
        heapq.heapreplace(heap, item)


def plot_histograms(values: dict[str, array], kept: dict[str, array], rule: SelectionConfig, cut: Cut | None,
                    path: Path) -> Path:
    """One panel per dimension (mu) and one for the ranking key; kept rows in colour, cuts as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from editrl.report import save_figure
    import numpy as np

    names = list(values)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        v = np.frombuffer(values[name], dtype=np.float32)
        k = np.frombuffer(kept[name], dtype=np.float32)
        bins = np.linspace(float(v.min()), float(v.max()) + 1e-6, 40)
        ax.hist(v, bins=bins, color="#bbbbbb", label=f"all ({v.size})")
        ax.hist(k, bins=bins, color="#2b7bba", label=f"kept ({k.size})")
        cuts = []
        if name in rule.min_dims:
            cuts.append((rule.min_dims[name], f"min {rule.min_dims[name]:g}"))
        if name == "rank_key":
            if rule.threshold is not None:
                cuts.append((rule.threshold, f"threshold {rule.threshold:g}"))
            if cut is not None and cut.key is not None:
                cuts.append((cut.key, f"top cut {cut.key:.3f}"))
        for x, label in cuts:
            ax.axvline(x, color="#d62728", linestyle="--", label=label)
        title = "ranking key" + (f" (score - {rule.uncertainty_k:g} sigma)" if rule.uncertainty_k else " (score)")
        ax.set_title(title if name == "rank_key" else f"mu {name}", fontsize=9)
        ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=110)


def _edited_field(row: dict[str, Any]) -> str:
    return next(n for n in EDITRL_FIELDS["edited"] + FOLDER_ALIASES["edited"] if isinstance(row.get(n), str))


def _source_field(row: dict[str, Any]) -> str:
    return next(n for n in EDITRL_FIELDS["source"] + FOLDER_ALIASES["source"] if isinstance(row.get(n), str))


def plot_extremes(lowest: list[dict[str, Any]], highest: list[dict[str, Any]], out_dir: Path, path: Path) -> Path:
    """Two rows of examples, lowest then highest ranked; each cell shows source | edited over its instruction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from editrl.report import save_figure
    import numpy as np
    from PIL import Image

    cols = max(len(lowest), len(highest))
    fig, axes = plt.subplots(2, cols, figsize=(2.3 * cols, 5.0), squeeze=False)
    for r, (label, rows) in enumerate((("lowest", lowest), ("highest", highest))):
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(rows):
                continue
            row = rows[c]
            pair = []
            for field in (_source_field(row), _edited_field(row)):
                try:
                    with Image.open(resolve_path(out_dir, row[field])) as im:
                        pair.append(np.asarray(im.convert("RGB").resize((64, 64), Image.NEAREST)))
                except OSError:
                    pair.append(np.zeros((64, 64, 3), np.uint8))
            gap = np.full((64, 3, 3), 255, np.uint8)
            ax.imshow(np.concatenate([pair[0], gap, pair[1]], axis=1), interpolation="nearest")
            instruction = next((row[n] for n in EDITRL_FIELDS["instruction"] + FOLDER_ALIASES["instruction"]
                                if isinstance(row.get(n), str)), "")
            ax.set_title(f"{label} {c + 1}: {row['reward']['rank_key']:.2f}\n" + textwrap.fill(instruction, 28),
                         fontsize=6)
    fig.suptitle("source | edited, by ranking key (top row: lowest, bottom row: highest)", fontsize=8)
    return save_figure(fig, path, dpi=110)
