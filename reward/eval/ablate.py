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


# ---- config ------------------------------------------------------------------------------------------

def load_ablation(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> AblationConfig:
    """``AblationConfig`` from YAML; top-level ablation fields from ``overrides`` set it, the rest are common
    training overrides (see the module docstring)."""
    own = {"base", "data", "out_dir", "eval_batch_size"}
    mine, common = [], []
    for item in overrides:
        key = item.partition("=")[0].strip()
        (mine if key in own else common).append(item)
    cfg = load_config(AblationConfig, path, mine)
    cfg.overrides = list(cfg.overrides) + common
    return cfg


def variant_train_configs(cfg: AblationConfig, out: Path) -> list[Any]:
    """The resolved ``RewardTrainConfig`` of every variant, all checked before anything trains; a bad key or
    value is a ``ConfigError`` naming the variant and the key."""
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
    n_train: int | None = None
    resolved = []
    for v in cfg.variants:
        managed = [f"data.train={cfg.data}", "data.extra_train=[]", f"out_dir={out / v.name}"]  # `data` alone
        try:
            tcfg = load_config(RewardTrainConfig, cfg.base, [*cfg.overrides, *v.overrides, *managed])
        except ConfigError as err:
            raise ConfigError(f"ablation variant {v.name!r}: {err}") from err
        if v.pair_fraction is not None:
            if n_train is None:
                n_train = _training_pair_count(tcfg)
            tcfg.data.max_pairs = max(1, round(v.pair_fraction * n_train))
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


def run_variant(v: AblationVariant, tcfg: Any, data: str, *, batch_size: int, progress: bool) -> dict[str, Any]:
    """Train (or resume / skip the training of) one variant, evaluate it on the bench split, save its row."""
    from reward.eval.editworld_bench import run_editworld_eval
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
    res = run_editworld_eval(vdir / "final", data, out_dir=vdir / "eval", batch_size=batch_size, baselines=False,
                             progress=progress)["reward model"]
    row = {
        "name": v.name, "table": v.table, "overrides": list(v.overrides), "pair_fraction": v.pair_fraction,
        "max_pairs": tcfg.data.max_pairs, "steps": extra.get("train_step"), "max_steps": tcfg.train.max_steps,
        "val_accuracy": extra.get("val_accuracy"), "pairwise_accuracy": res["pairwise_accuracy"],
        "bench_pairs": res["pairs"], "seconds": round(time.time() - t0, 1), "train_seconds": round(train_s, 1),
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
    for i, (v, tcfg) in enumerate(zip(cfg.variants, tcfgs), 1):
        head = f"[{i}/{len(tcfgs)}] {v.name}"
        row = finished_result(out / v.name, tcfg)
        if row is not None:
            console.print(f"{head}: done earlier (acc {100 * row['pairwise_accuracy']:.2f}%), skipped")
        else:
            budget = f"{tcfg.train.max_steps} steps" if tcfg.train.max_steps else f"{tcfg.train.epochs} epochs"
            subset = f"; {v.pair_fraction:.0%} of the pairs = {tcfg.data.max_pairs}" if v.pair_fraction else ""
            console.print(f"{head}: training {budget} ({', '.join(v.overrides) or 'base preset'}{subset})")
            row = run_variant(v, tcfg, cfg.data, batch_size=cfg.eval_batch_size, progress=progress)
            console.print(f"{head}: bench acc {100 * row['pairwise_accuracy']:.2f}% after {row['steps']} steps "
                          f"({row['seconds']:.0f} s)")
        rows.append(row)
        write_outputs(cfg, rows, out)  # partial results are on disk after every variant
    console.print(ablation_table(rows, cfg.data))
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


def write_outputs(cfg: AblationConfig, rows: list[dict[str, Any]], out: Path) -> None:
    """``ablate.json`` (config + one row per variant, finished so far) and the ``ablate.png`` bar chart."""
    (out / "ablate.json").write_text(json.dumps({"config": config_to_dict(cfg), "rows": rows}, indent=1))
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


__all__ = ["AblationVariant", "AblationConfig", "load_ablation", "variant_train_configs", "run_ablation"]
