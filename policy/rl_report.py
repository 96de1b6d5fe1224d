"""The picture of an online RL run: learned reward and held-out oracle score against steps.

If the learned reward climbs while the oracle score falls, the policy is hacking the reward model; this
plot (``curves.png`` beside ``metrics.jsonl``) is where that shows.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for row in rows:
        v = row.get(key)
        if v is not None and "step" in row and isinstance(v, (int, float)) and math.isfinite(v):
            xs.append(int(row["step"]))
            ys.append(float(v))
    return xs, ys


def plot_curves(metrics_path: str | Path, out_png: str | Path | None = None, title: str = "") -> Path:
    """Two panels: learned reward (training samples and held-out) and oracle scores, against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from editrl.report import save_figure

    from editrl.metrics import read_metrics

    metrics_path = Path(metrics_path)
    rows = read_metrics(metrics_path)
    out_png = Path(out_png) if out_png is not None else metrics_path.parent / "curves.png"
    fig, (ax_r, ax_o) = plt.subplots(1, 2, figsize=(10, 3.8))
    def plot(ax, key: str, label: str) -> None:
        xs, ys = _series(rows, key)
        if not xs:
            return
        if len(xs) < 30:
            ax.plot(xs, ys, marker=".", label=label)
            return
        line, = ax.plot(xs, ys, alpha=0.3, lw=0.8)  # per-step values are noisy: show a running mean over them
        w = 10
        smooth = [sum(ys[max(0, i - w + 1):i + 1]) / len(ys[max(0, i - w + 1):i + 1]) for i in range(len(ys))]
        ax.plot(xs, smooth, color=line.get_color(), label=f"{label} (mean of {w})")

    plot(ax_r, "reward_mean", "training reward (training samples)")
    plot(ax_r, "eval/reward", "learned reward (held-out, ODE)")
    ax_r.set_xlabel("step")
    ax_r.set_ylabel("reward")
    ax_r.set_title("the reward being optimised")
    for key, label in (("eval/oracle_instruction_following", "held-out oracle IF"),
                       ("eval/oracle_visual_quality", "held-out oracle VQ"),
                       ("reward/oracle_instruction_following", "training samples oracle IF")):
        plot(ax_o, key, label)
    ax_o.set_xlabel("step")
    ax_o.set_ylabel("oracle score (1-4)")
    ax_o.set_title("editworld oracle")
    for ax in (ax_r, ax_o):
        if ax.lines:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return save_figure(fig, out_png, dpi=100)


def held_out_gain(metrics_path: str | Path, key: str = "eval/oracle_instruction_following") -> tuple[float, float]:
    """``(score before training (step 0), score at the last evaluated step)`` of one run."""
    from editrl.metrics import read_metrics

    xs, ys = _series(read_metrics(metrics_path), key)
    if len(xs) < 2 or xs[0] != 0:
        raise ValueError(f"{metrics_path}: needs {key!r} at step 0 and at a later step")
    return ys[0], ys[-1]


def margin_over_seeds(metrics_paths: list[str | Path], key: str = "eval/oracle_instruction_following",
                      confidence: float = 0.95) -> dict[str, Any]:
    """Mean gain (last eval - step 0) over seeds with a Student-t confidence interval: THE RL measurement."""
    gains = [b - a for a, b in (held_out_gain(p, key) for p in metrics_paths)]
    return {"key": key, **t_interval(gains, confidence)}


def t_interval(gains: list[float], confidence: float = 0.95) -> dict[str, Any]:
    """Mean of per-seed gains with its Student-t interval (NaN bounds for a single seed), as a JSON-ready dict."""
    from editrl.stats import t_bounds

    mean, low, high = t_bounds(gains, confidence)
    out = {"n": len(gains), "gains": [float(g) for g in gains], "mean": mean, "ci": [low, high]}
    return out if len(gains) < 2 else {**out, "confidence": confidence}


def plot_seed_curves(metrics_paths: list[str | Path], out_png: str | Path, title: str = "") -> Path:
    """Held-out learned reward and oracle scores against step, one thin line per seed and their mean: the figure
    beside ``margin_over_seeds`` (whether the reward and the oracle move together across seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from editrl.metrics import read_metrics
    from editrl.report import save_figure

    runs = [read_metrics(p) for p in metrics_paths]
    panels = (("eval/reward", "learned reward"), ("eval/oracle_instruction_following", "oracle IF"),
              ("eval/oracle_visual_quality", "oracle VQ"))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (key, label) in zip(axes, panels):
        series = [_series(rows, key) for rows in runs]
        for xs, ys in series:
            if xs:
                ax.plot(xs, [y - ys[0] for y in ys], color="tab:blue", alpha=0.35, lw=1)
        common = sorted(set.intersection(*(set(xs) for xs, _ in series))) if all(xs for xs, _ in series) else []
        if common:
            mean = [np.mean([ys[xs.index(x)] - ys[0] for xs, ys in series]) for x in common]
            ax.plot(common, mean, color="tab:blue", lw=2.5, marker="o", label=f"mean of {len(series)}")
            ax.legend(fontsize=8)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"held-out {label}")
        ax.set_xlabel("step")
        ax.set_ylabel("change since step 0")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return save_figure(fig, out_png, dpi=100)


__all__ = ["plot_curves", "plot_seed_curves", "held_out_gain", "margin_over_seeds", "t_interval"]
