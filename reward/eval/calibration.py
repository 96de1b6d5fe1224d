"""Calibration of a reward model's predicted P(a > b) where the truth is known (the editworld's true scores).

For every pair of one group's candidates whose true scores differ, the model's per-candidate Gaussians give a
predicted probability that the first is better, by one of two formulas (both are reported, each labelled):

* ``thurstone``: P(a > b) = Phi((mu_a - mu_b) / sqrt(s_a^2 + s_b^2)) — what a sigma means if it is read as the
  uncertainty of a Gaussian score; the likelihood the ``probit`` loss trains (``reward.train.loss.probit_loss``).
* ``logistic``: P(a > b) = E_{z ~ N(mu_a - mu_b, s_a^2 + s_b^2)}[sigmoid(z)] — the likelihood behind the paper's
  uncertainty loss (and Bradley-Terry's sigmoid(mu_a - mu_b) when sigma -> 0).

The expected calibration error uses the confidence form: each pair is called for the candidate with P >= 0.5,
its confidence max(P, 1 - P) falls into one of ``bins`` equal-width bins over [0.5, 1], and
ECE = sum_bins (n_bin / n) |accuracy_bin - mean confidence_bin|. A model that calls every pair with confidence
~1 while 80% of the calls are right has ECE ~0.2. Per dimension the same with that dimension's heads and true
scores; "overall" uses the aggregated Gaussians (``reward.train.loss.aggregate``, the model's aggregation)
against the sum of the true scores. On a bench with several annotators per candidate, the Spearman correlation
of predicted sigma with annotator disagreement (the standard deviation of their scores) is reported too.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from editrl.io import DataError, iter_jsonl

FORMULAS = ("thurstone", "logistic")
_GH_X, _GH_W = np.polynomial.hermite.hermgauss(48)


def pair_probability(delta: np.ndarray, s: np.ndarray, formula: str) -> np.ndarray:
    """Predicted P(first > second) from the score difference ``delta`` and its standard deviation ``s``."""
    from scipy.special import expit, ndtr

    delta, s = np.asarray(delta, dtype=float), np.asarray(s, dtype=float)
    if formula == "thurstone":
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(s > 0, delta / np.where(s > 0, s, 1.0), np.sign(delta) * np.inf)
        return np.where(np.isnan(r), 0.5, ndtr(np.nan_to_num(r, nan=0.0, posinf=40.0, neginf=-40.0)))
    if formula == "logistic":
        z = delta[..., None] + math.sqrt(2.0) * s[..., None] * _GH_X
        return (expit(z) * _GH_W).sum(-1) / math.sqrt(math.pi)
    raise ValueError(f"unknown formula {formula!r}; expected one of {FORMULAS}")


def group_pairs(group_ids: Sequence[str], truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first, second, first truly better) for every within-group pair whose ``truth`` values differ."""
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(group_ids):
        by_group.setdefault(str(g), []).append(i)
    first, second = [], []
    for idx in by_group.values():
        for i, j in itertools.combinations(idx, 2):
            if abs(float(truth[i]) - float(truth[j])) > 1e-9:
                first.append(i), second.append(j)
    first_a, second_a = np.array(first, dtype=int), np.array(second, dtype=int)
    return first_a, second_a, np.asarray(truth, dtype=float)[first_a] > np.asarray(truth, dtype=float)[second_a]


def expected_calibration_error(p: np.ndarray, outcome: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """ECE (confidence form, see the module docstring) of probabilities ``p`` of binary ``outcome``s, with the
    reliability table: per bin its range, pairs, mean confidence and accuracy (None where empty)."""
    p, outcome = np.asarray(p, dtype=float), np.asarray(outcome, dtype=bool)
    if p.shape != outcome.shape or p.ndim != 1:
        raise ValueError(f"p {p.shape} and outcome {outcome.shape} must be equal 1-d shapes")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if not len(p):
        return {"ece": None, "pairs": 0, "accuracy": None, "mean_confidence": None, "bins": []}
    conf = np.maximum(p, 1.0 - p)
    right = np.where(p == 0.5, 0.5, ((p > 0.5) == outcome).astype(float))
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        m = which == b
        n = int(m.sum())
        acc = float(right[m].mean()) if n else None
        mc = float(conf[m].mean()) if n else None
        if n:
            ece += n / len(p) * abs(acc - mc)
        table.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "pairs": n, "confidence": mc, "accuracy": acc})
    return {"ece": float(ece), "pairs": int(len(p)), "accuracy": float(right.mean()),
            "mean_confidence": float(conf.mean()), "bins": table}


def _spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(spearmanr(x, y).statistic)


def calibration_report(mu: np.ndarray, log_sigma: np.ndarray, group_ids: Sequence[str], truth: np.ndarray,
                       dimensions: Sequence[str], aggregation: str = "mean",
                       annotator_scores: Sequence[dict[str, list[float]]] | None = None,
                       bins: int = 10) -> dict[str, Any]:
    """Calibration of per-candidate Gaussians ``mu``, ``log_sigma`` (N, D) against true scores ``truth`` (N, D).

    Returns {"overall" | dimension: {formula: ECE dict (``expected_calibration_error``)}, "sigma": summary,
    "disagreement_spearman": {...} or None}; "overall" uses the aggregated Gaussians and the summed truth."""
    import torch

    from reward.train.loss import aggregate

    mu, log_sigma, truth = (np.asarray(a, dtype=float) for a in (mu, log_sigma, truth))
    if not (mu.shape == log_sigma.shape == truth.shape and mu.ndim == 2 and mu.shape[1] == len(dimensions)):
        raise ValueError(f"mu {mu.shape}, log_sigma {log_sigma.shape}, truth {truth.shape} must be (N, "
                         f"{len(dimensions)}) for dimensions {list(dimensions)}")
    agg_mu, agg_sigma = (t.numpy() for t in aggregate(torch.from_numpy(mu), torch.from_numpy(log_sigma), aggregation))
    sigma = np.exp(log_sigma)
    columns = {"overall": (agg_mu, agg_sigma, truth.sum(1))}
    columns.update({d: (mu[:, k], sigma[:, k], truth[:, k]) for k, d in enumerate(dimensions)})
    report: dict[str, Any] = {"aggregation": aggregation, "bins": bins, "formulas": list(FORMULAS)}
    for name, (m, s, t) in columns.items():
        i, j, y = group_pairs(group_ids, t)
        delta, spread = m[i] - m[j], np.sqrt(s[i] ** 2 + s[j] ** 2)
        report[name] = {f: expected_calibration_error(pair_probability(delta, spread, f), y, bins) for f in FORMULAS}
    report["sigma"] = {"overall_median": float(np.median(agg_sigma)), "overall_min": float(agg_sigma.min()),
                       "overall_max": float(agg_sigma.max()),
                       **{f"{d}_median": float(np.median(sigma[:, k])) for k, d in enumerate(dimensions)}}
    report["disagreement_spearman"] = None
    if annotator_scores is not None and all(min(len(v) for v in a.values()) >= 2 for a in annotator_scores):
        stds = np.array([[np.std(a[d]) for d in dimensions] for a in annotator_scores])
        overall = np.array([np.std(np.sum([a[d] for d in dimensions], axis=0)) for a in annotator_scores])
        report["disagreement_spearman"] = {"overall": _spearman(agg_sigma, overall),
                                           **{d: _spearman(sigma[:, k], stds[:, k]) for k, d in enumerate(dimensions)}}
    return report


def true_scores_of(items: Sequence[Any], dimensions: Sequence[str]) -> np.ndarray:
    """(N, D) true scores of bench items (``BenchItem``: origin "manifest:line") read from their manifests."""
    cache: dict[str, dict[int, Any]] = {}
    out = []
    for it in items:
        manifest, _, line = it.origin.rpartition(":")
        if manifest not in cache:
            # lines load_bench_items rejected are not among the items: skip them here too (rejects=)
            cache[manifest] = {ln: row.get("true_scores") for ln, row in iter_jsonl(manifest, rejects=[])}
        ts = cache[manifest].get(int(line))
        if not isinstance(ts, dict) or any(d not in ts for d in dimensions):
            raise DataError(manifest, f"expected true scores for {list(dimensions)} (an editworld manifest), got "
                                      f"{ts!r}", line=int(line), field="true_scores")
        out.append([float(ts[d]) for d in dimensions])
    return np.array(out, dtype=float)


def plot_reliability(report: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Reliability diagram: accuracy against confidence per bin, one panel per column (overall, dimensions),
    both formulas, the diagonal, and each curve's ECE in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from editrl.report import save_figure

    names = [k for k in report if isinstance(report[k], dict) and set(FORMULAS) <= set(report[k])]
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        ax.plot([0.5, 1], [0.5, 1], color="grey", lw=0.8, ls="--")
        for f, marker in zip(FORMULAS, "os"):
            r = report[name][f]
            pts = [(b["confidence"], b["accuracy"]) for b in r["bins"] if b["pairs"]]
            if pts:
                ece = "n/a" if r["ece"] is None else f"{r['ece']:.3f}"
                ax.plot(*zip(*pts), marker=marker, label=f"{f} (ECE {ece})")
        ax.set_xlim(0.5, 1.0), ax.set_ylim(0.3, 1.0)
        ax.set_xlabel("predicted confidence"), ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel("share of calls right (true order)")
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, dpi=100)


def evaluate_calibration(model: Any, processor: Any, model_cfg: Any, items: Sequence[Any], out_dir: str | Path,
                         *, batch_size: int = 64, progress: bool = True, title: str = "") -> dict[str, Any]:
    """Score ``items`` (editworld bench items), write ``calibration.json`` and ``reliability.png`` to ``out_dir``;
    returns the report (``calibration_report``)."""
    from reward.eval.editworld_bench import model_gaussians

    dims = list(items[0].human_scores) if items else []
    mu, log_sigma = model_gaussians(model, processor, model_cfg, items, batch_size, progress)
    report = calibration_report(mu, log_sigma, [it.group_id for it in items], true_scores_of(items, dims), dims,
                                model_cfg.aggregation, [it.human_scores for it in items])
    return write_calibration(report, out_dir, title)


def write_calibration(report: dict[str, Any], out_dir: str | Path, title: str = "") -> dict[str, Any]:
    """``calibration.json`` and ``reliability.png`` of a report in ``out_dir``; returns the report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(report, indent=1))
    plot_reliability(report, out / "reliability.png", title)
    return report


def calibrate_checkpoints(checkpoints: dict[str, str | Path], items: Sequence[Any], out_dir: str | Path, *,
                          batch_size: int = 64, progress: bool = True, console: Any = None) -> dict[str, Any]:
    """``editrl reward eval``'s calibration section: for each {display name: checkpoint} the report on ``items``
    (the editworld bench) in ``out_dir/<checkpoint folder name>/``, one printed line each, and
    ``out_dir/summary.json``."""
    from reward.eval.editworld_bench import load_model_for_eval

    out = Path(out_dir)
    reports: dict[str, Any] = {}
    for name, path in checkpoints.items():
        model, processor, cfg = load_model_for_eval(path)
        folder = out / "".join(c if c.isalnum() or c in "._-" else "_" for c in name).strip("_")
        reports[name] = evaluate_calibration(model, processor, cfg, items, folder, batch_size=batch_size,
                                             progress=progress, title=f"{name}: {path}")
        reports[name]["files"] = {"json": str(folder / "calibration.json"), "png": str(folder / "reliability.png")}
        line = f"calibration of {name} (true order, {len(items)} candidates): {summary_line(reports[name])}"
        print(line) if console is None else console.print(line)
        del model
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(reports, indent=1))
    return reports


def summary_line(report: dict[str, Any]) -> str:
    """One readable line: overall ECE by each formula, per-dimension Thurstone ECE, median sigma, Spearman."""
    o = report["overall"]
    parts = [f"ECE overall: thurstone {o['thurstone']['ece']:.3f}, logistic {o['logistic']['ece']:.3f} "
             f"({o['thurstone']['pairs']} true-order pairs, accuracy {100 * o['thurstone']['accuracy']:.1f}%)"]
    dims = [k for k in report if k not in ("overall",) and isinstance(report[k], dict) and "thurstone" in report[k]]
    parts.append("per dimension (thurstone): " + ", ".join(f"{d} {report[d]['thurstone']['ece']:.3f}" for d in dims
                                                           if report[d]["thurstone"]["ece"] is not None))
    parts.append(f"median aggregated sigma {report['sigma']['overall_median']:.4f}")
    sp = report.get("disagreement_spearman")
    if sp:
        parts.append("Spearman(sigma, annotator disagreement): " + ", ".join(
            f"{k} {'n/a' if v is None else f'{v:+.3f}'}" for k, v in sp.items()))
    return "; ".join(parts)


__all__ = ["FORMULAS", "pair_probability", "group_pairs", "expected_calibration_error", "calibration_report",
           "true_scores_of", "plot_reliability", "evaluate_calibration", "write_calibration", "calibrate_checkpoints",
           "summary_line"]
