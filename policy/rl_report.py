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

    from editrl.metrics import read_metrics

    metrics_path = Path(metrics_path)
    rows = read_metrics(metrics_path)
    out_png = Path(out_png) if out_png is not None else metrics_path.parent / "curves.png"
    fig, (ax_r, ax_o) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, label in (("reward_mean", "learned reward (training samples)"),
                       ("eval/reward", "learned reward (held-out, ODE)")):
        xs, ys = _series(rows, key)
        if xs:
            ax_r.plot(xs, ys, marker="." if len(xs) < 30 else None, label=label)
    ax_r.set_xlabel("step")
    ax_r.set_ylabel("reward")
    ax_r.set_title("learned reward")
    for key, label in (("eval/oracle_instruction_following", "held-out oracle IF"),
                       ("eval/oracle_visual_quality", "held-out oracle VQ"),
                       ("reward/oracle_instruction_following", "training samples oracle IF")):
        xs, ys = _series(rows, key)
        if xs:
            ax_o.plot(xs, ys, marker="." if len(xs) < 30 else None, label=label)
    ax_o.set_xlabel("step")
    ax_o.set_ylabel("oracle score (1-4)")
    ax_o.set_title("editworld oracle")
    for ax in (ax_r, ax_o):
        if ax.lines:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


__all__ = ["plot_curves"]
