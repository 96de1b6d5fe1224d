# long: one command (config, runs over seeds, evaluation with calibration, summary with t-intervals, table and plots)
"""``editrl reward ablate``: the paper's Table 4 and Table 7 ablations on the editworld, one command.

Every variant is the same reward train preset (``base``) plus the ``overrides`` common to all variants
plus the variant's own overrides, with the training pairs taken from the editworld folder ``data``. So
all variants share one budget (max_steps, batch, lr, time budget) and one seed unless a variant
overrides them on purpose. Each is trained with ``reward.train.trainer.train`` into ``OUT/<name>/`` and
evaluated with ``reward.eval.editworld_bench.run_editworld_eval`` on the editworld bench split (non-tied pairwise
accuracy); the table is printed (rich) and written as ``OUT/ablate.json`` and ``OUT/ablate.png``.

Resumable: a variant whose final checkpoint and ``OUT/<name>/ablate_result.json`` exist is skipped; one
interrupted during training resumes from its latest checkpoint (``resume=auto``); one interrupted during
evaluation is only evaluated. A finished variant whose resolved training config differs from the one now
asked for is an error (pick another ``--out`` or delete that variant's folder), never a silent mix.

Command-line overrides: ``key=value`` whose key is a field of ``AblationConfig`` without a dot (``base``,
``data``, ``out_dir``, ``eval_batch_size``) sets that field; every other override (``train.max_steps=300``,
``model.tiny.hidden_size=64``, ``data.val_fraction=0.1``, ...) is appended to the common training overrides.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from editrl.config import ConfigError, config_to_dict, load_config
from editrl.stats import t_interval

RESULT_NAME = "ablate_result.json"
MANAGED_KEYS = ("out_dir", "resume", "data.train", "data.extra_train")  # set by the ablation for every variant


@dataclass
class AblationVariant:
    """One row of the ablation table: the base preset with a few fields changed."""

    # Short unique name: the row label and the sub-folder OUT/<name> (letters, digits, '-', '_', '.').
    name: str = ""
    # Which table of the paper the row belongs to (a label shown in the table, e.g. "Table 4").
    table: str = ""
    # Dotted `key.sub=value` overrides of the reward train config (reward/train/config.py), applied after
    # the base preset and the common overrides; [] = the base preset itself (the reference row).
    overrides: list[str] = field(default_factory=list)
    # Data-size ablation: train on this share of the training pairs (sets data.max_pairs from the number of
    # non-validation pairs of `data`, the subset seeded by train.seed); None = all of them.
    pair_fraction: float | None = None


@dataclass
class AblationConfig:
    """An ablation: which preset, which variants, which data, where the results go."""

    # Reward train preset every variant starts from (e.g. configs/reward/editworld-tiny.yaml).
    base: str = "configs/reward/editworld-tiny.yaml"
    # Dotted overrides of the train config common to every variant (the shared budget, e.g. train.max_steps=600).
    overrides: list[str] = field(default_factory=list)
    # The variants, trained and evaluated in this order.
    variants: list[AblationVariant] = field(default_factory=list)
    # Editworld dataset folder (`editrl world generate`): its pairs.jsonl trains, its bench split evaluates.
    data: str = "runs/world-train"
    # Output folder: one sub-folder per variant, ablate.json and ablate.png; rerun with it to resume.
    out_dir: str = "runs/reward-ablate"
    # Candidates per scoring batch in the bench evaluation.
    eval_batch_size: int = 64
    # Seeds every variant is trained with: one run each in OUT/<name>-s<seed> with train.seed=<seed>, summarised as
    # mean and 95% t-interval over the seeds, and as the paired difference to the `reference` variant (same seed).
    # [] = one run per variant with the preset's seed, in OUT/<name>.
    seeds: list[int] = field(default_factory=list)
    # An editor-samples bench folder (`editrl world editor-samples ... split=bench annotator_noise=0.0`): a second
    # column, the within-task pairwise accuracy on the editor's own samples; None = the editworld bench only.
    within_task: str | None = None


# ---- config ------------------------------------------------------------------------------------------

def load_ablation(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> AblationConfig:
    """``AblationConfig`` from YAML; top-level ablation fields from ``overrides`` set it, the rest are common
    training overrides (see the module docstring)."""
    own = {"base", "data", "out_dir", "eval_batch_size", "seeds", "within_task"}
    mine, common = [], []
    for item in overrides:
        key = item.partition("=")[0].strip()
        (mine if key in own else common).append(item)
    cfg = load_config(AblationConfig, path, mine)
    cfg.overrides = list(cfg.overrides) + common
    return cfg


def runs_of(cfg: AblationConfig) -> list[tuple[AblationVariant, int | None, str]]:
    """(variant, seed or None, run name) of every training run, in order: each variant's seeds in turn."""
    if not cfg.seeds:
        return [(v, None, v.name) for v in cfg.variants]
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise ConfigError(f"ablation: seeds {cfg.seeds} repeat a seed")
    return [(v, int(seed), f"{v.name}-s{seed}") for v in cfg.variants for seed in cfg.seeds]


def variant_train_configs(cfg: AblationConfig, out: Path) -> list[Any]:
    """The resolved ``RewardTrainConfig`` of every run (``runs_of``: one per variant and seed), all checked before
    anything trains; a bad key or value is a ``ConfigError`` naming the variant and the key."""
    from reward.train.config import RewardTrainConfig

    if not cfg.variants:
        raise ConfigError("ablation: no variants given")
    names = [v.name for v in cfg.variants]
    for v in cfg.variants:
        if not re.fullmatch(r"[A-Za-z0-9._-]+", v.name or ""):
            raise ConfigError(f"ablation: variant name {v.name!r} must be non-empty letters, digits, '.', '-', '_'")
        if names.count(v.name) > 1:
            raise ConfigError(f"ablation: variant name {v.name!r} is used twice")
        if v.pair_fraction is not None and not 0.0 < v.pair_fraction <= 1.0:
            raise ConfigError(f"ablation: variant {v.name!r}: pair_fraction must be in (0, 1], got {v.pair_fraction}")
        for item in [*cfg.overrides, *v.overrides]:
            if item.partition("=")[0].strip() in MANAGED_KEYS:
                raise ConfigError(f"ablation: variant {v.name!r}: {item.partition('=')[0].strip()} is set by the "
                                  f"ablation (data = the editworld folder, OUT/<name> per variant); drop it")
    if not Path(cfg.data).is_dir():
        raise ConfigError(f"ablation: data folder not found: {cfg.data} (make one with `editrl world generate`)")
    if cfg.within_task is not None and not Path(cfg.within_task).is_dir():
        raise ConfigError(f"ablation: within_task folder not found: {cfg.within_task} (make one with `editrl world "
                          f"editor-samples --out DIR split=bench annotator_noise=0.0`)")
    n_train: dict[int, int] = {}  # by seed: the validation split depends on it
    resolved = []
    for v, seed, run in runs_of(cfg):
        managed = [f"data.train={cfg.data}", "data.extra_train=[]", f"out_dir={out / run}"]  # `data` alone
        seeded = [] if seed is None else [f"train.seed={seed}"]
        try:
            tcfg = load_config(RewardTrainConfig, cfg.base, [*cfg.overrides, *v.overrides, *seeded, *managed])
        except ConfigError as err:
            raise ConfigError(f"ablation variant {v.name!r}: {err}") from err
        if v.pair_fraction is not None:
            if tcfg.train.seed not in n_train:
                n_train[tcfg.train.seed] = _training_pair_count(tcfg)
            tcfg.data.max_pairs = max(1, round(v.pair_fraction * n_train[tcfg.train.seed]))
        resolved.append(tcfg)
    return resolved


def _training_pair_count(tcfg: Any) -> int:
    """Pairs left for training after the validation hold-out, exactly as the trainer splits them."""
    from reward.train.data import load_pairs, split_by_group

    pairs = load_pairs(tcfg.data.train, tcfg.data.image_root)
    if tcfg.data.val is not None:
        return len(pairs)
    return len(split_by_group(pairs, tcfg.data.val_fraction, tcfg.train.seed)[0])


# ---- one variant ---------------------------------------------------------------------------------------

def _comparable(tcfg: Any) -> dict[str, Any]:
    d = json.loads(json.dumps(config_to_dict(tcfg), default=str))  # tuples -> lists, as read back from JSON
    d.pop("resume", None)
    d.get("train", {}).pop("keep_checkpoints", None)  # housekeeping: does not change what is trained
    return d


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [k for key in sorted(set(a) | set(b)) for k in _diff_keys(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]


def finished_result(vdir: Path, tcfg: Any) -> dict[str, Any] | None:
    """The saved row of a finished variant (final checkpoint + eval result), or None; a row trained with a
    different config is a ConfigError."""
    from reward.model.editreward import WEIGHTS_NAME

    path = vdir / RESULT_NAME
    if not ((vdir / "final" / WEIGHTS_NAME).is_file() and path.is_file()):
        return None
    row = json.loads(path.read_text())
    diff = _diff_keys(row.get("train_config", {}), _comparable(tcfg))
    if diff:
        raise ConfigError(f"ablation variant {vdir.name!r}: {vdir} was trained with a different config "
                          f"(differs at {', '.join(diff[:6])}); use another --out or delete that folder")
    return row


def evaluate_run(checkpoint: Path, data: str, within_task: str | None, out_dir: Path, *, batch_size: int,
                 progress: bool) -> dict[str, Any]:
    """Accuracy on the human-non-tied bench pairs (and the within-task pairs of ``within_task``) with the
    calibration of each (``reward.eval.calibration``: ECE against the true order, sigma, reliability PNG)."""
    import torch

    from reward.eval.calibration import calibration_report, true_scores_of, write_calibration
    from reward.eval.editworld_bench import (accuracy_non_tied, human_pairs, load_bench_items, load_model_for_eval,
                                             model_gaussians)
    from reward.train.loss import aggregate

    model, processor, mcfg = load_model_for_eval(checkpoint)
    res: dict[str, Any] = {}
    for key, folder in (("bench", data), ("within_task", within_task)):
        if folder is None:
            continue
        items = load_bench_items(folder)
        dims = list(items[0].human_scores)
        mu, log_sigma = model_gaussians(model, processor, mcfg, items, batch_size, progress)
        scores = aggregate(torch.from_numpy(mu), torch.from_numpy(log_sigma), mcfg.aggregation)[0].numpy()
        acc, n = accuracy_non_tied(scores, *human_pairs(items))
        cal = calibration_report(mu, log_sigma, [it.group_id for it in items], true_scores_of(items, dims), dims,
                                 mcfg.aggregation, [it.human_scores for it in items])
        write_calibration(cal, out_dir / key, f"{checkpoint} on {folder}")
        res[key] = {"accuracy": acc, "pairs": n, "ece_thurstone": cal["overall"]["thurstone"]["ece"],
                    "ece_logistic": cal["overall"]["logistic"]["ece"], "sigma_median": cal["sigma"]["overall_median"],
                    "disagreement_spearman": (cal["disagreement_spearman"] or {}).get("overall")}
    return res


def run_variant(v: AblationVariant, tcfg: Any, data: str, *, batch_size: int, progress: bool,
                seed: int | None = None, within_task: str | None = None) -> dict[str, Any]:
    """Train (or resume / skip the training of) one run of a variant, evaluate it, save its row."""
    from reward.model.editreward import EXTRA_NAME, WEIGHTS_NAME
    from reward.train.trainer import train

    vdir = Path(tcfg.out_dir)
    t0 = time.time()
    if not (vdir / "final" / WEIGHTS_NAME).is_file():
        shutil.rmtree(vdir / "eval", ignore_errors=True)  # scores of an older model must not be reused
        tcfg.resume = "auto"  # continue from the latest checkpoint of an interrupted run, if any
        result = train(tcfg, progress=progress)
        if result.final_dir is None:
            raise RuntimeError(f"ablation variant {v.name!r}: training stopped without a final checkpoint")
        tcfg.resume = None
    train_s = time.time() - t0
    extra = json.loads((vdir / "final" / EXTRA_NAME).read_text()) if (vdir / "final" / EXTRA_NAME).is_file() else {}
    res = evaluate_run(vdir / "final", data, within_task, vdir / "eval", batch_size=batch_size, progress=progress)
    row = {
        "name": vdir.name, "variant": v.name, "seed": seed, "table": v.table, "overrides": list(v.overrides),
        "pair_fraction": v.pair_fraction,
        "max_pairs": tcfg.data.max_pairs, "steps": extra.get("train_step"), "max_steps": tcfg.train.max_steps,
        "val_accuracy": extra.get("val_accuracy"), "pairwise_accuracy": res["bench"]["accuracy"],
        "bench_pairs": res["bench"]["pairs"], "eval": res,
        "within_task_accuracy": res["within_task"]["accuracy"] if "within_task" in res else None,
        "seconds": round(time.time() - t0, 1), "train_seconds": round(train_s, 1),
        "checkpoint": str(vdir / "final"), "train_config": _comparable(tcfg),
    }
    (vdir / RESULT_NAME).write_text(json.dumps(row, indent=1))
    return row


# ---- the whole ablation ----------------------------------------------------------------------------------

def run_ablation(cfg: AblationConfig, *, progress: bool = True) -> list[dict[str, Any]]:
    """Train and evaluate every variant (skipping finished ones); print the table, write JSON and PNG."""
    from rich.console import Console

    console = Console()
    out = Path(cfg.out_dir)
    tcfgs = variant_train_configs(cfg, out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, ((v, seed, run), tcfg) in enumerate(zip(runs_of(cfg), tcfgs), 1):
        head = f"[{i}/{len(tcfgs)}] {run}"
        row = finished_result(out / run, tcfg)
        if row is not None:
            console.print(f"{head}: done earlier (acc {100 * row['pairwise_accuracy']:.2f}%), skipped")
        else:
            budget = f"{tcfg.train.max_steps} steps" if tcfg.train.max_steps else f"{tcfg.train.epochs} epochs"
            subset = f"; {v.pair_fraction:.0%} of the pairs = {tcfg.data.max_pairs}" if v.pair_fraction else ""
            console.print(f"{head}: training {budget} ({', '.join(v.overrides) or 'base preset'}{subset})")
            row = run_variant(v, tcfg, cfg.data, batch_size=cfg.eval_batch_size, progress=progress, seed=seed,
                              within_task=cfg.within_task)
            console.print(f"{head}: bench acc {100 * row['pairwise_accuracy']:.2f}% after {row['steps']} steps "
                          f"({row['seconds']:.0f} s)")
        rows.append(row)
        write_outputs(cfg, rows, out)  # partial results are on disk after every variant
    console.print(ablation_table(rows, cfg.data))
    if cfg.seeds:
        console.print(summary_table(summarise(rows)))
    console.print(f"wrote {out / 'ablate.json'} and {out / 'ablate.png'}")
    return rows


def ablation_table(rows: list[dict[str, Any]], data: str):
    from rich.table import Table

    n = rows[0]["bench_pairs"] if rows else 0
    table = Table(title=f"reward ablations on the editworld bench ({data}; {n} non-tied pairs)")
    for col, just in [("table", "left"), ("variant", "left"), ("changes", "left"), ("steps", "right"),
                      ("train pairs", "right"), ("val acc", "right"), ("bench acc (non-tied)", "right")]:
        table.add_column(col, justify=just)
    for r in rows:
        val = "n/a" if r.get("val_accuracy") is None else f"{100 * r['val_accuracy']:.2f}%"
        pairs = "all" if r.get("max_pairs") is None else str(r["max_pairs"])
        changes = list(r["overrides"]) + ([f"{r['pair_fraction']:.0%} of the pairs"] if r.get("pair_fraction") else [])
        table.add_row(r["table"], r["name"], ", ".join(changes) or "-", str(r["steps"]), pairs, val,
                      f"{100 * r['pairwise_accuracy']:.2f}%")
    return table


METRICS = (("pairwise_accuracy", "bench acc"), ("within_task_accuracy", "within-task acc"),
           ("ece_bench", "bench ECE (thurstone)"), ("ece_bench_logistic", "bench ECE (logistic)"))


def _metric(row: dict[str, Any], key: str) -> float | None:
    if key in ("ece_bench", "ece_bench_logistic"):
        field = "ece_logistic" if key.endswith("logistic") else "ece_thurstone"
        return (row.get("eval") or {}).get("bench", {}).get(field)
    return row.get(key)


def summarise(rows: list[dict[str, Any]], reference: str = "reference") -> list[dict[str, Any]]:
    """One entry per variant: for each metric the mean and 95% t-interval over its seeds, and the paired
    difference to ``reference`` over the seeds both have (mean, interval, verdict: the interval excludes 0 -> the
    variant is "higher" / "lower", else "within noise")."""
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_variant.setdefault(r.get("variant") or r["name"], []).append(r)
    ref = {r.get("seed"): r for r in by_variant.get(reference, [])}
    out = []
    for name, runs in by_variant.items():
        entry: dict[str, Any] = {"variant": name, "table": runs[0]["table"], "overrides": runs[0]["overrides"],
                                 "pair_fraction": runs[0].get("pair_fraction"), "seeds": [r.get("seed") for r in runs],
                                 "steps": [r.get("steps") for r in runs]}
        for key, _ in METRICS:
            vals = [_metric(r, key) for r in runs if _metric(r, key) is not None]
            if not vals:
                continue
            mean, half = t_interval(vals)
            entry[key] = {"mean": mean, "ci95": half, "values": vals}
            diffs = [_metric(r, key) - _metric(ref[r.get("seed")], key) for r in runs
                     if r.get("seed") in ref and _metric(r, key) is not None
                     and _metric(ref[r.get("seed")], key) is not None]
            if name != reference and diffs:
                d, dh = t_interval(diffs)
                verdict = "n/a" if dh is None else ("higher" if d - dh > 0 else "lower" if d + dh < 0 else "within noise")
                entry[key]["vs_reference"] = {"mean": d, "ci95": dh, "n": len(diffs), "verdict": verdict}
        out.append(entry)
    return out


def _pm(m: dict[str, Any] | None, scale: float = 100.0, digits: int = 2) -> str:
    if not m:
        return "-"
    half = "" if m.get("ci95") is None else f" ± {scale * m['ci95']:.{digits}f}"
    return f"{scale * m['mean']:.{digits}f}{half}"


def summary_table(summary: list[dict[str, Any]]):
    """Rich table of ``summarise``: mean ± 95% interval per metric, and the paired difference to the reference."""
    from rich.table import Table

    table = Table(title="reward ablations over seeds: mean ± 95% t-interval (paired difference to the reference)")
    for col in ("variant", "seeds", *[h for _, h in METRICS]):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for e in summary:
        cells = []
        for key, _ in METRICS:
            m = e.get(key)
            scale, digits = (1.0, 3) if key.startswith("ece_bench") else (100.0, 2)
            vs = (m or {}).get("vs_reference")
            cells.append(_pm(m, scale, digits) + (f"\n({'+' if vs['mean'] >= 0 else ''}{_pm(vs, scale, digits)}: "
                                                   f"{vs['verdict']})" if vs else ""))
        table.add_row(e["variant"], str(len(e["seeds"])), *cells)
    return table


def write_outputs(cfg: AblationConfig, rows: list[dict[str, Any]], out: Path) -> None:
    """``ablate.json`` (config + one row per run finished so far, + the per-variant summary over seeds) and the
    ``ablate.png`` chart (bars: mean per variant, whiskers: 95% t-interval, dots: the seeds)."""
    summary = summarise(rows)
    (out / "ablate.json").write_text(json.dumps({"config": config_to_dict(cfg), "rows": rows, "summary": summary},
                                                indent=1))
    plot_sigma_curves(rows, out / "sigma.png")
    if cfg.seeds:
        return _plot_summary(summary, out / "ablate.png")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from editrl.report import save_figure

    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(rows) + 2), 4))
    tables = sorted({r["table"] for r in rows})
    colors = {t: f"C{i}" for i, t in enumerate(tables)}
    acc = [100 * r["pairwise_accuracy"] for r in rows]
    bars = ax.bar(range(len(rows)), acc, color=[colors[r["table"]] for r in rows])
    for b, a in zip(bars, acc):
        ax.text(b.get_x() + b.get_width() / 2, a + 0.5, f"{a:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(rows)), [r["name"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("bench pairwise accuracy, non-tied (%)")
    ax.set_ylim(0, 115)
    ax.axhline(50, color="grey", lw=0.8, ls="--")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[t]) for t in tables]
    if any(tables):
        ax.legend(handles, tables, loc="upper right", fontsize=8, ncol=len(tables))
    ax.set_title("reward ablations (editworld bench)")
    save_figure(fig, out / "ablate.png", dpi=100)


def plot_sigma_curves(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Mean predicted sigma of the training batch (each dimension) against the step, one line per run, coloured by
    variant, log scale (``train/sigma_mean_d*`` of each run's metrics.jsonl): the paper's loss drives it to 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from editrl.dimensions import DIMENSIONS
    from editrl.metrics import read_metrics
    from editrl.report import save_figure

    curves = []
    for r in rows:
        metrics = Path(r["checkpoint"]).parent / "metrics.jsonl"
        if metrics.is_file():
            pts = [m for m in read_metrics(metrics) if "train/sigma_mean_d0" in m]
            if pts:
                curves.append((r.get("variant") or r["name"], pts))
    if not curves:
        return None
    dims = sorted(k for k in curves[0][1][0] if k.startswith("train/sigma_mean_d"))
    fig, axes = plt.subplots(1, len(dims), figsize=(4.6 * len(dims), 3.6), squeeze=False)
    colors = {v: f"C{i}" for i, v in enumerate(dict.fromkeys(v for v, _ in curves))}
    for ax, key in zip(axes[0], dims):
        seen = set()
        for variant, pts in curves:
            ax.plot([m["step"] for m in pts], [max(m[key], 1e-6) for m in pts], color=colors[variant], lw=1,
                    label=None if variant in seen else variant)
            seen.add(variant)
        d = int(key.rpartition("_d")[2])
        ax.set_yscale("log"), ax.set_xlabel("step")
        ax.set_title(f"mean sigma, {DIMENSIONS[d] if d < len(DIMENSIONS) else key}", fontsize=9)
    axes[0][0].set_ylabel("mean predicted sigma (train batch)")
    axes[0][-1].legend(fontsize=7)
    return save_figure(fig, path, dpi=100)


def _plot_summary(summary: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from editrl.report import save_figure

    keys = [(k, h) for k, h in METRICS[:2] if any(k in e for e in summary)]
    fig, axes = plt.subplots(1, len(keys), figsize=(max(5.0, 0.75 * len(summary) + 2) * len(keys) / 1.4, 4.2),
                             squeeze=False)
    tables = sorted({e["table"] for e in summary})
    colors = {t: f"C{i}" for i, t in enumerate(tables)}
    for ax, (key, header) in zip(axes[0], keys):
        xs = range(len(summary))
        means = [100 * e[key]["mean"] if key in e else float("nan") for e in summary]
        errs = [100 * (e[key]["ci95"] or 0.0) if key in e else 0.0 for e in summary]
        ax.bar(xs, means, yerr=errs, capsize=3, color=[colors[e["table"]] for e in summary], alpha=0.8)
        for x, e in zip(xs, summary):
            vals = [100 * v for v in e.get(key, {}).get("values", [])]
            ax.plot([x] * len(vals), vals, "k.", ms=4)
        finite = [m for m in means if m == m]
        lo = min([v for e in summary for v in e.get(key, {}).get("values", [])] or [0.5]) * 100
        ax.set_ylim(max(0.0, min(lo, min(finite or [50])) - 5), max(finite or [100]) + 5)
        ax.set_xticks(list(xs), [e["variant"] for e in summary], rotation=35, ha="right", fontsize=8)
        ax.set_ylabel(f"{header}, non-tied pairs (%)")
        ax.axhline(50, color="grey", lw=0.8, ls="--")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[t]) for t in tables]
    axes[0][0].legend(handles, tables, loc="lower left", fontsize=7)
    fig.suptitle("reward ablations: mean over seeds, 95% t-interval, dots = seeds", fontsize=9)
    save_figure(fig, path, dpi=100)


__all__ = ["AblationVariant", "AblationConfig", "load_ablation", "runs_of", "variant_train_configs", "run_ablation",
           "summarise", "evaluate_run", "plot_sigma_curves"]
