"""Table 2 from score files: the cells of each method under editrl's metrics and the official protocol, the
human upper bound, and the printed table, its PNG and ``table2.json``. ``reward.eval.table2`` runs the suite that
writes the score files; this module only reads them, so ``--from-scores`` needs no model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from editrl.config import ConfigError
from editrl.io import DataError
from reward.eval.score_files import BENCHES, bench_metrics, read_scores

# table columns: (key, header, bench)
COLUMNS = (
    ("genai_ties", "GenAI (ties)", "genai"), ("genai", "GenAI", "genai"),
    ("aurora_ties", "AURORA (ties)", "aurora"), ("aurora", "AURORA", "aurora"),
    ("aurora_point", "AURORA (point)", "aurora_point"), ("imagenhub", "ImagenHub", "imagenhub"),
    ("editreward_k2", "EditReward K=2", "editreward"), ("editreward_k3", "K=3", "editreward"),
    ("editreward_k4", "K=4", "editreward"), ("editreward_overall", "Overall", "editreward"),
    ("editworld", "editworld", "editworld"),
)
# the official eval_bench.py figures of the same scores: (key, header, bench)
OFFICIAL_COLUMNS = (
    ("genai_paper", "GenAI (paper)", "genai"), ("genai_noties", "GenAI (no ties)", "genai"),
    ("aurora_paper", "AURORA (paper)", "aurora"), ("aurora_noties", "AURORA (no ties)", "aurora"),
    ("aurora_point", "AURORA (point)", "aurora_point"), ("imagenhub", "ImagenHub", "imagenhub"),
    ("er2_pairwise", "ER-2 pairwise", "editreward"), ("er2_strict", "ER-2 strict", "editreward"),
    ("er3_pairwise", "ER-3 pairwise", "editreward"), ("er3_strict", "ER-3 strict", "editreward"),
    ("er4_pairwise", "ER-4 pairwise", "editreward"), ("er4_strict", "ER-4 strict", "editreward"),
    ("er_pairwise", "ER overall pairwise", "editreward"), ("er_strict", "ER overall strict", "editreward"),
)
POINT_COLUMNS = ("imagenhub", "aurora_point")
PROTOCOLS = ("both", "editrl", "official")
OFFICIAL_NOTE = (
    "Official protocol: the same scores through EditReward's evaluate/eval_bench.py, reproduced "
    "(reward.eval.official_protocol; scores rounded to float32 as there). '(paper)': its calc_accuracy_with_ties, "
    "which never tries 'no model ties'; '(no ties)': C/(C+D) over human-non-tied pairs. ER = EditReward-Bench per "
    "group size: 2 pairwise = tie-calibrated with eps fitted on the 2-candidate groups, 3/4 pairwise = without "
    "ties, overall pairwise = re-calibrated over all pairs; strict = the exact ranking (a bare 'A=B' label counts "
    "as A>B, rankings with '=' are never strictly right). ImagenHub: tanh(mean r); AURORA (point): mean r.")
HUMAN_ROW = "human (upper bound)"
POSITION_NOTE = ("position bias (A.8): accuracy with every pair's order swapped; the reward model and all baselines "
                 "score each edit on its own (point-wise), so the swapped accuracy is identical by construction. (There an exact score tie counts as wrong; the editworld "
                 "column counts it as half.)")



def table_row(metrics: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """The Table 2 cells of one method (None where the bench was not given / the metric is undefined)."""
    row: dict[str, float | None] = {key: None for key, _, _ in COLUMNS}
    if "genai" in metrics:
        row["genai_ties"], row["genai"] = metrics["genai"]["accuracy_with_ties"], metrics["genai"]["accuracy"]
    if "aurora" in metrics:
        row["aurora_ties"], row["aurora"] = metrics["aurora"]["accuracy_with_ties"], metrics["aurora"]["accuracy"]
    for bench in POINT_COLUMNS:
        if bench in metrics:
            row[bench] = metrics[bench]["spearman"]
    if "editreward" in metrics:
        m = metrics["editreward"]
        for k in ("2", "3", "4"):
            row[f"editreward_k{k}"] = m["by_k"].get(k)
        row["editreward_overall"] = m["overall"]
    if "editworld" in metrics:
        row["editworld"] = metrics["editworld"]["accuracy"]
    return row


def official_row(metrics: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """The official-protocol cells of one method (None where the bench was not given / undefined)."""
    row: dict[str, float | None] = {key: None for key, _, _ in OFFICIAL_COLUMNS}
    for bench in ("genai", "aurora"):
        if bench in metrics:
            off = metrics[bench]["official"]
            row[f"{bench}_paper"], row[f"{bench}_noties"] = off["accuracy_with_ties_paper"], off["accuracy_without_ties"]
    for bench in POINT_COLUMNS:
        if bench in metrics:
            row[bench] = metrics[bench]["official"]["average"]
    if "editreward" in metrics:
        off = metrics["editreward"]["official"]
        for k in ("2", "3", "4"):
            if f"{k}-Pair" in off:
                row[f"er{k}_pairwise"] = off[f"{k}-Pair"]["pairwise_accuracy"]
                row[f"er{k}_strict"] = off[f"{k}-Pair"]["strict_ranking_accuracy"]
        row["er_pairwise"], row["er_strict"] = off["overall"]["pairwise_accuracy"], off["overall"]["strict_ranking_accuracy"]
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
                              "rows": {}, "details": {}, "methods": {}, "human_upper_bound": {}, "benches": [],
                              "official_columns": [{"key": k, "header": h, "bench": b} for k, h, b in OFFICIAL_COLUMNS],
                              "official_rows": {}}
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
        result["official_rows"][display] = official_row(metrics)
        if "imagenhub" in metrics and metrics["imagenhub"].get("human_upper_bound") is not None:
            result["human_upper_bound"]["imagenhub"] = metrics["imagenhub"]["human_upper_bound"]
    if "imagenhub" in result["human_upper_bound"]:
        human = {key: None for key, _, _ in COLUMNS}
        human["imagenhub"] = result["human_upper_bound"]["imagenhub"]
        result["rows"][HUMAN_ROW] = human
    result["benches"] = [b for b in BENCHES if b in benches_seen]
    result["notes"] = _notes(result)
    result["official_notes"] = [OFFICIAL_NOTE]
    return result


def _notes(result: dict[str, Any]) -> list[str]:
    notes = ["editrl metrics. '(ties)': tie-calibrated pairwise accuracy (Deutsch et al.), model tie = |diff| <= eps chosen per method; "
             "plain columns: accuracy over human-non-tied pairs. EditReward: strict group accuracy with the eps that "
             "maximises tie-calibrated accuracy on the bench's own within-group pairs. ImagenHub, AURORA (point): "
             "Spearman (Fisher-z mean over editing models)."]
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
    return f"{value:.3f}" if column in POINT_COLUMNS else f"{100 * value:.2f}"


def print_table(result: dict[str, Any], console: Any = None, protocol: str = "both") -> None:
    """Print editrl's table, the official protocol's, or both (``protocol``: both, editrl, official)."""
    from rich.console import Console
    from rich.table import Table

    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    tables = []
    if protocol in ("both", "editrl"):
        tables.append(("Reward-model evaluation (Table 2), editrl metrics: accuracy % / Spearman",
                       COLUMNS, result["rows"], result.get("notes", [])))
    if protocol in ("both", "official") and "official_rows" in result:
        tables.append(("The same scores under the official EditReward protocol (eval_bench.py): accuracy % / Spearman",
                       OFFICIAL_COLUMNS, result["official_rows"], result.get("official_notes", [])))
    if console is None:
        console = Console()
        if not console.is_terminal:  # a log or a pipe: do not squeeze the table to 80 columns
            console = Console(width=200)
    for title, columns, rows, notes in tables:
        cols = [(k, h) for k, h, _ in columns]
        if columns is OFFICIAL_COLUMNS:  # 14 columns: only the benches given
            cols = [(k, h) for k, h in cols if any(r.get(k) is not None for r in rows.values())] or cols
        table = Table(title=title, caption="\n".join(notes), caption_justify="left")
        table.add_column("method")
        for _, header in cols:
            table.add_column(header, justify="right")
        for method, row in rows.items():
            table.add_row(method, *(_fmt(row.get(k), k) for k, _ in cols))
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


def write_outputs(result: dict[str, Any], out_dir: str | Path, console: Any = None,
                  protocol: str = "both") -> dict[str, Any]:
    """table2.json (both protocols), table2.png (editrl's metrics) and the printed table(s)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "table2.json").write_text(json.dumps(result, indent=1))
    plot_table(result, out_dir / "table2.png")
    print_table(result, console, protocol)
    return result



__all__ = ["COLUMNS", "OFFICIAL_COLUMNS", "PROTOCOLS", "table_row", "official_row", "compute_table",
           "print_table", "plot_table", "write_outputs"]
