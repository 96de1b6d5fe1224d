"""The reward evaluation suite: the paper's Table 2 for any set of checkpoints and the baselines.

``run_eval_suite`` scores every item of every given benchmark with each method (reward checkpoints through
``reward.evaluate.model_scorer``; baselines random / pixel heuristic / untrained backbone with heads),
writes the per-item scores to ``OUT/scores/<method>/<bench>.jsonl`` and computes the metrics from those
files only, so ``--from-scores OUT`` recomputes the same table without loading any model.

Score files are self-contained (one JSON object per benchmark item, the human judgement included):

* ``genai`` / ``aurora`` (pairs):  ``{"item": i, "scores": [s_first, s_second], "label": 1 | -1 | 0}``
* ``imagenhub`` (point-wise):     ``{"item": i, "scores": [s], "model": "editor", "human_scores": [r1, r2, r3]}``
* ``editreward`` (K-way groups):  ``{"item": i, "scores": [s_A, s_B, ...], "ranking": "C>A>B"}``
* ``editworld`` (bench split):    ``{"item": id, "scores": [s], "group_id": g, "human_scores": {dim: [..]}}``

Metrics (``reward.metrics``): GenAI / AURORA pairwise accuracy with ties (tie-calibrated, eps reported) and
without; ImagenHub Spearman-Fisher mean over editing models beside the human-to-human upper bound;
EditReward-Bench strict group accuracy for K = 2, 3, 4 and overall, with the eps that maximises the
tie-calibrated accuracy on the bench's own within-group pairs; editworld non-tied pairwise accuracy.
The position-bias check (paper A.8) reruns every pairwise bench with the pair order swapped.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from editrl.config import ConfigError
from editrl.io import DataError, iter_jsonl

BENCHES = ("genai", "aurora", "imagenhub", "editreward", "editworld")
BENCH_ALIASES = {
    "genai": "genai", "genai_bench_edit": "genai", "genai-bench": "genai", "genai_bench": "genai",
    "aurora": "aurora", "aurora_bench": "aurora", "aurora-bench": "aurora",
    "imagenhub": "imagenhub",
    "editreward": "editreward", "editreward_bench": "editreward", "editreward-bench": "editreward",
    "editworld": "editworld",
}
# table columns: (key, header, bench)
COLUMNS = (
    ("genai_ties", "GenAI (ties)", "genai"), ("genai", "GenAI", "genai"),
    ("aurora_ties", "AURORA (ties)", "aurora"), ("aurora", "AURORA", "aurora"),
    ("imagenhub", "ImagenHub", "imagenhub"),
    ("editreward_k2", "EditReward K=2", "editreward"), ("editreward_k3", "K=3", "editreward"),
    ("editreward_k4", "K=4", "editreward"), ("editreward_overall", "Overall", "editreward"),
    ("editworld", "editworld", "editworld"),
)
BASELINES = {"random": "random", "pixel": "pixel-difference heuristic", "untrained": "untrained backbone + heads"}
HUMAN_ROW = "human (upper bound)"
POSITION_NOTE = ("position bias (A.8): accuracy with every pair's order swapped; the reward model and all baselines "
                 "score each edit on its own (point-wise), so the swapped accuracy is identical by construction. (There an exact score tie counts as wrong; the editworld "
                 "column counts it as half.)")


# ---- arguments -----------------------------------------------------------------------------------

def parse_bench_args(specs: Sequence[str] | None) -> dict[str, Path]:
    """``["genai=PATH", ...]`` -> {canonical bench name: path}; unknown names and missing paths are errors."""
    out: dict[str, Path] = {}
    for spec in specs or ():
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--bench {spec!r}: expected NAME=PATH with NAME one of genai, aurora, imagenhub, editreward")
        key = BENCH_ALIASES.get(name.strip().lower())
        if key is None or key == "editworld":
            raise ConfigError(f"--bench {spec!r}: unknown benchmark {name!r}; expected one of genai, aurora, "
                              "imagenhub, editreward (the editworld bench comes from --data)")
        if key in out:
            raise ConfigError(f"--bench {name}: given twice")
        p = Path(path)
        if not p.exists():
            raise DataError(p, f"benchmark file for --bench {name} not found")
        out[key] = p
    return out


def parse_baselines(spec: str | None) -> list[str]:
    """``"random,pixel,untrained"`` -> the baseline keys, in that order; ``""`` / ``"none"`` -> none."""
    if spec is None or spec.strip().lower() in ("", "none"):
        return []
    keys = [s.strip().lower() for s in spec.split(",") if s.strip()]
    for k in keys:
        if k not in BASELINES:
            raise ConfigError(f"--baselines: unknown baseline {k!r}; expected a comma list of {', '.join(BASELINES)}")
    return list(dict.fromkeys(keys))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "method"


# ---- benchmark loading: units to score and how they map back to items ------------------------------

@dataclass
class LoadedBench:
    """A benchmark as unique (source, instruction, edited) units to score plus per-item rows to fill."""

    name: str
    path: str
    units: list[Any]                      # reward.evaluate.BenchItem, one per distinct edit
    rows: list[dict[str, Any]]            # the score-file rows without "scores"
    unit_index: list[list[int]]           # per row: which units make its "scores"
    meta: dict[str, Any] = field(default_factory=dict)


def _units_builder(path: str):
    from reward.evaluate import BenchItem

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
    from reward import benchmarks as B

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
    elif name == "imagenhub":
        for i, it in enumerate(B.load_imagenhub(path, image_root)[:max_items]):
            index.append([unit(it.source, it.instruction, it.edited, i + 1, it.model_name)])
            rows.append({"item": i, "model": it.model_name, "human_scores": list(it.human_scores)})
    elif name == "editreward":
        for i, it in enumerate(B.load_editreward_bench(path, image_root)[:max_items]):
            index.append([unit(it.source, it.instruction, c, i + 1, str(i)) for c in it.candidates])
            rows.append({"item": i, "ranking": it.ranking})
    elif name == "editworld":
        from reward.evaluate import load_bench_items

        items = load_bench_items(path)
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
            "editreward": ("scores", "ranking"), "editworld": ("scores", "group_id", "human_scores")}[bench]
    rows = []
    for line, row in iter_jsonl(path, required=need):
        s = row["scores"]
        if not isinstance(s, list) or not s or not all(isinstance(x, (int, float)) and np.isfinite(x) for x in s):
            raise DataError(path, f"expected a list of finite scores, got {s!r}", line=line, field="scores")
        want = {"genai": 2, "aurora": 2, "imagenhub": 1, "editworld": 1}.get(bench)
        if want is not None and len(s) != want:
            raise DataError(path, f"expected {want} score(s) for a {bench} item, got {len(s)}", line=line, field="scores")
        rows.append(row)
    if not rows:
        raise DataError(path, "no scored items in this file")
    return rows


# ---- metrics from score rows ---------------------------------------------------------------------

def _pair_metrics(diff: np.ndarray, label: np.ndarray) -> dict[str, Any]:
    from reward.metrics import pairwise_accuracy, pairwise_accuracy_with_ties, position_bias

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
    s = np.array([r["scores"] for r in rows], dtype=float)
    label = np.sign(np.array([float(r["label"]) for r in rows]))
    return _pair_metrics(s[:, 0] - s[:, 1], label)


def _imagenhub_from_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from reward.benchmarks import PointItem, imagenhub_groups, imagenhub_human_upper_bound
    from reward.metrics import spearman_fisher_mean

    items = [PointItem("", "", "", str(r["model"]), tuple(float(x) for x in r["human_scores"])) for r in rows]
    out: dict[str, Any] = {"items": len(rows), "editing_models": len({it.model_name for it in items})}
    try:
        out["spearman"] = spearman_fisher_mean(imagenhub_groups(items, [r["scores"][0] for r in rows]))
    except ValueError as err:
        out["spearman"], out["spearman_error"] = None, str(err)
    try:
        out["human_upper_bound"] = imagenhub_human_upper_bound(items)
    except ValueError as err:
        out["human_upper_bound"], out["human_upper_bound_error"] = None, str(err)
    return out


def _editreward_from_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from reward.metrics import pairwise_accuracy_with_ties, parse_ranking, strict_group_accuracy, strict_group_accuracy_by_k

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
    return {"eps": eps, "pairwise_accuracy_with_ties": acc_ties, "groups": len(rows),
            "groups_by_k": {str(k): sum(len(s) == k for s in scores) for k in by_k},
            "by_k": {str(k): v for k, v in by_k.items()}, "overall": strict_group_accuracy(scores, rankings, eps)}


def _editworld_from_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from reward.evaluate import BenchItem, accuracy_non_tied, human_pairs
    from reward.metrics import position_bias

    items = [BenchItem(id=str(r["item"]), group_id=str(r["group_id"]), source="", instruction="", edited="",
                       human_scores={k: [float(x) for x in v] for k, v in r["human_scores"].items()}, origin="")
             for r in rows]
    first, second, label = human_pairs(items)
    s = np.array([r["scores"][0] for r in rows], dtype=float)
    acc, n = accuracy_non_tied(s, first, second, label)
    keep = label != 0
    pb = position_bias(lambda a, b: a - b, [(s[i], s[j], int(lab)) for i, j, lab in
                                            zip(first[keep], second[keep], label[keep])])
    return {"accuracy": acc, "pairs": n, "human_ties": int((~keep).sum()), "position_bias": pb.to_dict()}


def bench_metrics(bench: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """All metrics of one method on one benchmark, from its score rows."""
    if bench in ("genai", "aurora"):
        return _pairs_from_rows(rows)
    if bench == "imagenhub":
        return _imagenhub_from_rows(rows)
    if bench == "editreward":
        return _editreward_from_rows(rows)
    return _editworld_from_rows(rows)


def table_row(metrics: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """The Table 2 cells of one method (None where the bench was not given / the metric is undefined)."""
    row: dict[str, float | None] = {key: None for key, _, _ in COLUMNS}
    if "genai" in metrics:
        row["genai_ties"], row["genai"] = metrics["genai"]["accuracy_with_ties"], metrics["genai"]["accuracy"]
    if "aurora" in metrics:
        row["aurora_ties"], row["aurora"] = metrics["aurora"]["accuracy_with_ties"], metrics["aurora"]["accuracy"]
    if "imagenhub" in metrics:
        row["imagenhub"] = metrics["imagenhub"]["spearman"]
    if "editreward" in metrics:
        m = metrics["editreward"]
        for k in ("2", "3", "4"):
            row[f"editreward_k{k}"] = m["by_k"].get(k)
        row["editreward_overall"] = m["overall"]
    if "editworld" in metrics:
        row["editworld"] = metrics["editworld"]["accuracy"]
    return row


def compute_table(out_dir: str | Path) -> dict[str, Any]:
    """Table 2 from ``OUT/scores/<method>/<bench>.jsonl`` alone (the --from-scores path)."""
    out_dir = Path(out_dir)
    scores_dir = out_dir / "scores"
    if not scores_dir.is_dir():
        raise DataError(scores_dir, "no scores folder here (expected scores/<method>/<bench>.jsonl from `reward eval --out`)")
    index_path = out_dir / "methods.json"
    names = json.loads(index_path.read_text()) if index_path.is_file() else {}
    order = list(names)
    methods = sorted((p for p in scores_dir.iterdir() if p.is_dir()),
                     key=lambda p: (order.index(p.name) if p.name in order else len(order), p.name))
    if not methods:
        raise DataError(scores_dir, "no method folders with score files")
    result: dict[str, Any] = {"columns": [{"key": k, "header": h, "bench": b} for k, h, b in COLUMNS],
                              "rows": {}, "details": {}, "methods": {}, "human_upper_bound": {}, "benches": []}
    benches_seen: set[str] = set()
    for mdir in methods:
        display = names.get(mdir.name, mdir.name)
        metrics: dict[str, dict[str, Any]] = {}
        for f in sorted(mdir.glob("*.jsonl")):
            bench = f.stem
            if bench not in BENCHES:
                raise DataError(f, f"unknown benchmark {bench!r} in a score file name; expected one of {', '.join(BENCHES)}")
            metrics[bench] = bench_metrics(bench, read_scores(f, bench))
            benches_seen.add(bench)
        result["methods"][display] = mdir.name
        result["details"][display] = metrics
        result["rows"][display] = table_row(metrics)
        if "imagenhub" in metrics and metrics["imagenhub"].get("human_upper_bound") is not None:
            result["human_upper_bound"]["imagenhub"] = metrics["imagenhub"]["human_upper_bound"]
    if "imagenhub" in result["human_upper_bound"]:
        human = {key: None for key, _, _ in COLUMNS}
        human["imagenhub"] = result["human_upper_bound"]["imagenhub"]
        result["rows"][HUMAN_ROW] = human
    result["benches"] = [b for b in BENCHES if b in benches_seen]
    result["notes"] = _notes(result)
    return result


def _notes(result: dict[str, Any]) -> list[str]:
    notes = ["'(ties)': tie-calibrated pairwise accuracy (Deutsch et al.), model tie = |diff| <= eps chosen per method; "
             "plain columns: accuracy over human-non-tied pairs. EditReward: strict group accuracy with the eps that "
             "maximises tie-calibrated accuracy on the bench's own within-group pairs. ImagenHub: Spearman "
             "(Fisher-z mean over editing models)."]
    bias = []
    for method, metrics in result["details"].items():
        parts = [f"{b} {100 * m['position_bias']['accuracy_given']:.1f}->{100 * m['position_bias']['accuracy_swapped']:.1f}"
                 for b, m in metrics.items() if isinstance(m, dict) and "position_bias" in m]
        if parts:
            bias.append(f"{method}: " + ", ".join(parts))
    notes.append(POSITION_NOTE + (" Given->swapped %: " + "; ".join(bias) if bias else ""))
    return notes


# ---- output --------------------------------------------------------------------------------------

def _fmt(value: float | None, column: str) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if column == "imagenhub" else f"{100 * value:.2f}"


def print_table(result: dict[str, Any], console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    cols = [(k, h) for k, h, b in COLUMNS]
    table = Table(title="Reward-model evaluation (Table 2): accuracy % / ImagenHub Spearman",
                  caption="\n".join(result.get("notes", [])), caption_justify="left")
    table.add_column("method")
    for _, header in cols:
        table.add_column(header, justify="right")
    for method, row in result["rows"].items():
        table.add_row(method, *(_fmt(row.get(k), k) for k, _ in cols))
    if console is None:
        console = Console()
        if not console.is_terminal:  # a log or a pipe: do not squeeze the table to 80 columns
            console = Console(width=200)
    console.print(table)


def plot_table(result: dict[str, Any], path: str | Path) -> Path:
    """Grouped bar chart: benchmark columns on x, one bar per method (ImagenHub Spearman on the same 0-1 axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from editrl.report import save_figure

    rows = {m: r for m, r in result["rows"].items()}
    cols = [(k, h) for k, h, _ in COLUMNS if any(r.get(k) is not None for r in rows.values())]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(cols) + 2), 4.2))
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(cols))
    for i, (method, row) in enumerate(rows.items()):
        vals = [row.get(k) for k, _ in cols]
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, [np.nan if v is None else v for v in vals], width, label=method)
    ax.set_xticks(x, [h for _, h in cols], rotation=30, ha="right")
    ax.set_ylabel("accuracy (ImagenHub: Spearman)")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_title("Reward models on the Table 2 benchmarks")
    ax.legend(fontsize=7, loc="best")
    return save_figure(fig, path, dpi=110)


def write_outputs(result: dict[str, Any], out_dir: str | Path, console: Any = None) -> dict[str, Any]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "table2.json").write_text(json.dumps(result, indent=1))
    plot_table(result, out_dir / "table2.png")
    print_table(result, console)
    return result


# ---- the suite -----------------------------------------------------------------------------------

def _checkpoint_names(checkpoints: Sequence[str | Path]) -> list[str]:
    if len(checkpoints) == 1:
        return ["reward model"]
    names = []
    for c in checkpoints:
        p = Path(c)
        base = f"{p.parent.name}/{p.name}" if p.name in ("final", "eval") or p.name.startswith("step-") else p.name
        name = f"reward model ({base})"
        while name in names:
            name += "'"
        names.append(name)
    return names


def run_eval_suite(checkpoints: Sequence[str | Path] = (), *, data: str | Path | None = None,
                   benches: dict[str, Path] | None = None, image_root: str | Path | None = None,
                   baselines: Sequence[str] = ("random", "pixel", "untrained"), out_dir: str | Path,
                   batch_size: int = 64, max_items: int | None = None, progress: bool = True,
                   console: Any = None) -> dict[str, Any]:
    """Score every bench with every checkpoint and baseline, save the scores, print / write Table 2."""
    from reward.evaluate import (load_model_for_eval, model_scorer, pixel_heuristic_scorer, random_scorer,
                                 untrained_like)

    out = Path(out_dir)
    benches = dict(benches or {})
    if not checkpoints:
        raise ConfigError("reward eval: give at least one --checkpoint (or --from-scores DIR)")
    # load (and validate) every benchmark before any model
    loaded: list[LoadedBench] = []
    if data is not None:
        loaded.append(load_bench("editworld", data, max_items=max_items))
    for name in BENCHES:
        if name in benches:
            loaded.append(load_bench(name, benches[name], image_root, max_items))
    if not loaded:
        raise ConfigError("reward eval: nothing to evaluate; give --data EDITWORLD_DIR and/or --bench NAME=PATH")
    for c in checkpoints:
        if not Path(c).is_dir():
            raise DataError(c, "reward checkpoint directory not found")

    methods: list[tuple[str, str, Callable[[], Any]]] = []  # (display, slug, make scorer)
    first_cfg: list[Any] = []

    def ckpt_scorer(path):
        def make():
            model, processor, cfg = load_model_for_eval(path)
            first_cfg.append(cfg)
            return model_scorer(model, processor, cfg, batch_size, progress)
        return make

    for name, path in zip(_checkpoint_names(checkpoints), checkpoints):
        methods.append((name, _slug(name.replace("reward model", "reward_model")), ckpt_scorer(path)))

    def untrained():
        cfg = first_cfg[0] if first_cfg else load_model_for_eval(checkpoints[0])[2]
        u_model, u_proc = untrained_like(cfg)
        return model_scorer(u_model, u_proc, cfg, batch_size, progress)

    makers = {"untrained": untrained, "pixel": lambda: pixel_heuristic_scorer, "random": lambda: random_scorer(0)}
    for key in baselines:
        methods.append((BASELINES[key], key, makers[key]))

    names = {}
    for display, slug, make in methods:
        fn = make()
        names[slug] = display
        for bench in loaded:
            write_scores(out / "scores" / slug / f"{bench.name}.jsonl", bench, [float(s) for s in fn(bench.units)])
        del fn
    (out / "methods.json").write_text(json.dumps(names, indent=1))
    result = compute_table(out)
    result["inputs"] = {"checkpoints": [str(c) for c in checkpoints], "data": None if data is None else str(data),
                        "benches": {b.name: b.path for b in loaded}, "items": {b.name: len(b.rows) for b in loaded}}
    write_outputs(result, out, console)
    if data is not None:  # the editworld-only eval's outputs, as `reward eval --data` always wrote them
        legacy = {m: {"pairwise_accuracy": d["editworld"]["accuracy"], "pairs": d["editworld"]["pairs"]}
                  for m, d in result["details"].items() if "editworld" in d}
        (out / "editworld_eval.json").write_text(json.dumps({"checkpoint": str(checkpoints[0]), "data": str(data),
                                                             "results": legacy}, indent=1))
        src = out / "scores" / methods[0][1] / "editworld.jsonl"
        with (out / "scores_reward.jsonl").open("w") as f:
            for row in read_scores(src, "editworld"):
                f.write(json.dumps({"id": row["item"], "group_id": row["group_id"], "score": row["scores"][0]}) + "\n")
    return result


def run_from_scores(scores_dir: str | Path, out_dir: str | Path | None = None, console: Any = None) -> dict[str, Any]:
    """Recompute Table 2 from saved scores (no model is loaded); outputs go to ``out_dir`` (default: scores_dir)."""
    result = compute_table(scores_dir)
    result["inputs"] = {"from_scores": str(scores_dir)}
    return write_outputs(result, out_dir or scores_dir, console)


__all__ = ["BENCHES", "COLUMNS", "parse_bench_args", "parse_baselines", "load_bench", "LoadedBench", "write_scores",
           "read_scores", "bench_metrics", "table_row", "compute_table", "print_table", "plot_table",
           "run_eval_suite", "run_from_scores"]
