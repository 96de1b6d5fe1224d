"""Handler of ``editrl best-of-n``: one (source, instruction) request, or ``--sweep`` over held-out editworld tasks.

One request writes, under ``--out``:
``source.png``, ``chosen.png``, ``candidates/NN.png`` (sampling order), ``scores.json`` (per candidate: per-dimension
mu and sigma, aggregate, lcb = aggregate - k * aggregate sigma, the selection score, rank), ``grid.png`` (candidates
ranked by the selection rule, mu +- sigma per dimension under each) and ``index.html`` (the table and the grid).

``--sweep`` writes ``sweep.json`` and ``sweep.png`` (mean oracle score of the chosen edit against N) and prints a
rich table. Heavy imports stay inside the functions.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Sequence

from editrl.config import ConfigError


def run(args: argparse.Namespace) -> int:
    """``editrl best-of-n``: dispatch to the single request or the sweep."""
    from editrl.io import DataError

    if args.k < 0:
        raise DataError("--k", f"k must be >= 0, got {args.k}")
    if args.sweep:
        return sweep_command(args)
    missing = [flag for flag, v in (("--source", args.source), ("--instruction", args.instruction), ("--n", args.n))
               if v is None]
    if missing:
        raise ConfigError(f"best-of-n: {', '.join(missing)} required (or pass --sweep)")
    return single_command(args)


# ---------------------------------------------------------------------------------------------- shared helpers
def reward_spec(args: argparse.Namespace) -> str:
    """The ``make_reward_client`` spec: ``--reward`` (checkpoint folder, ray://NAME[@ADDRESS] or ensemble:A,B,...) or ``--service``."""
    from editrl.io import DataError

    if args.service:
        return f"ray://{args.service}" + (f"@{args.ray_address}" if args.ray_address else "")
    if not args.reward:
        raise ConfigError("best-of-n: --reward CKPT (or --service NAME) is required")
    from reward.serve.ensemble import member_specs

    spec = str(args.reward)
    for member in member_specs(spec):
        if not member.startswith("ray://") and not Path(member).is_dir():
            raise DataError(member, "reward checkpoint directory not found", field="--reward")
    return spec


def load_pieces(args: argparse.Namespace) -> tuple[Any, Any]:
    """(editor, reward client) for the parsed arguments."""
    import torch

    from reward.serve.client import make_reward_client
    from rollout.registry import load_editor

    if args.threads:
        torch.set_num_threads(args.threads)
    kw = {"device": args.device} if args.device else {}
    client = make_reward_client(reward_spec(args), device=args.device)  # first: a missing service fails fast
    editor = load_editor(args.editor, **kw)
    if hasattr(client, "batch_size") and args.batch_size:
        client.batch_size = int(args.batch_size)
    return editor, client


ABBREV = {"instruction_following": "IF", "visual_quality": "VQ"}


def _fmt(x: Any, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


# ---------------------------------------------------------------------------------------------- one request
def single_command(args: argparse.Namespace) -> int:
    from rich.table import Table

    from editrl.io import DataError, load_image
    from editrl.report import console as make_console
    from reward.model.inputs import InputError, check_instruction
    from rollout.best_of_n import best_of_n

    source_path = Path(args.source)
    if not source_path.is_file():
        raise DataError(source_path, "source image not found", field="--source")
    if args.n < 1:
        raise DataError("--n", f"N must be >= 1, got {args.n}")
    source = load_image(source_path, field="--source")  # decoded within editrl.io.InputLimits, or a DataError
    try:
        check_instruction(args.instruction)
    except InputError as err:
        raise DataError("--instruction", str(err).removeprefix("instruction: "), field="--instruction") from None
    editor, client = load_pieces(args)
    result = best_of_n(editor, client, source, args.instruction, args.n, rule=args.select, k=args.k,
                       num_steps=args.steps, noise_level=args.noise_level, guidance=args.guidance, seed=args.seed,
                       batch_size=args.batch_size)
    out = write_request(result, args.out, extra={"editor": args.editor, "reward": reward_spec(args),
                                                 "source": str(source_path), "steps": args.steps,
                                                 "noise_level": args.noise_level, "seed": args.seed})

    rows = result.rows()
    dims = list(rows[0]["mu"]) if rows and rows[0]["mu"] else []
    table = Table(title=f"best-of-{args.n} ({args.select}{f', k={args.k:g}' if args.select == 'lcb' else ''}): "
                        f"{args.instruction!r}")
    for col in ("rank", "candidate", *[f"{ABBREV.get(d, d)} mu +- sigma" for d in dims], "aggregate", "lcb"):
        table.add_column(col, justify="right")
    for r in sorted(rows, key=lambda r: r["rank"]):
        cells = [f"{_fmt(r['mu'].get(d))} +- {_fmt(r['sigma'].get(d))}" for d in dims]
        style = "bold green" if r["chosen"] else None
        table.add_row(str(r["rank"]), f"{r['index']:02d}", *cells,
                      f"{_fmt(r['aggregate'])} +- {_fmt(r['aggregate_sigma'])}", _fmt(r["lcb"]), style=style)
    console = make_console()
    console.print(table)
    console.print(", ".join(f"{v} = {d}" for d, v in ABBREV.items() if d in dims))
    console.print(f"chosen: candidate {result.chosen:02d} -> {out / 'chosen.png'}; report {out / 'index.html'}")
    failed = [r for r in rows if r["error"]]
    for r in failed:
        console.print(f"[red]error[/red] candidate {r['index']:02d}: {r['error']}")
    return 0


def write_request(result: Any, out_dir: str | Path, extra: dict | None = None) -> Path:
    """Write source, chosen, candidates, scores.json, grid.png and index.html of one best-of-N request."""
    from editrl.report import HtmlReport

    out = Path(out_dir)
    (out / "candidates").mkdir(parents=True, exist_ok=True)
    width = max(2, len(str(len(result.images) - 1)))
    files = []
    for i, im in enumerate(result.images):
        name = f"candidates/{i:0{width}d}.png"
        im.convert("RGB").save(out / name)
        files.append(name)
    result.image.convert("RGB").save(out / "chosen.png")
    result.source.convert("RGB").save(out / "source.png")
    rows = result.rows()
    for r, f in zip(rows, files):
        r["file"] = f
    doc = {"instruction": result.instruction, "n": len(result.images), "select": result.rule, "k": result.k,
           "chosen": result.chosen, "chosen_file": files[result.chosen], **(extra or {}), "candidates": rows}
    (out / "scores.json").write_text(json.dumps(doc, indent=2) + "\n")
    ranked_grid(result.source, result.images, rows, out / "grid.png")

    dims = list(rows[0]["mu"]) if rows and rows[0]["mu"] else []
    rule = result.rule + (f" (k = {result.k:g})" if result.rule == "lcb" else "")
    report = HtmlReport(f"best-of-{len(result.images)}: {result.instruction}")
    report.text(f"Selection rule: {rule}. lcb = aggregate mu - k * aggregate sigma, k = {result.k:g}. "
                f"Chosen: candidate {files[result.chosen]}.")
    report.image(out / "source.png", "source")
    report.heading("Candidates ranked by reward")
    report.image(out / "grid.png", "source, then candidates best first: rank, file, mu +- sigma per dimension")
    header = ["rank", "candidate", *[f"{d} mu" for d in dims], *[f"{d} sigma" for d in dims], "aggregate",
              "aggregate sigma", "lcb", "chosen"]
    table = []
    for r in sorted(rows, key=lambda r: r["rank"]):
        table.append([r["rank"], r["file"], *[_fmt(r["mu"].get(d)) for d in dims],
                      *[_fmt(r["sigma"].get(d)) for d in dims], _fmt(r["aggregate"]), _fmt(r["aggregate_sigma"]),
                      _fmt(r["lcb"]), "yes" if r["chosen"] else (r["error"] or "")])
    report.table(header, table)
    report.heading("Chosen edit")
    report.image(out / "chosen.png", files[result.chosen])
    report.write(out / "index.html")
    return out


def ranked_grid(source: Any, images: Sequence[Any], rows: Sequence[dict], path: str | Path, columns: int = 8,
                min_tile: int = 128) -> Path:
    """A PNG: the source, then the candidates in rank order, each captioned with rank, mu +- sigma per dimension,
    aggregate and lcb."""
    from PIL import Image, ImageDraw

    tile = max(min_tile, max(im.size[0] for im in images))
    line = 12
    dims = list(rows[0]["mu"]) if rows and rows[0]["mu"] else []
    caption_h = line * (len(dims) + 2) + 4
    pad = 6
    ranked = sorted(rows, key=lambda r: r["rank"])
    cells = [("source", source, None)] + [(f"#{r['rank']}  cand {r['index']:02d}", images[r["index"]], r) for r in ranked]
    cols = min(columns, len(cells))
    nrows = math.ceil(len(cells) / cols)
    grid = Image.new("RGB", (pad + cols * (tile + pad), pad + nrows * (tile + caption_h + pad)), "white")
    draw = ImageDraw.Draw(grid)
    for c, (title, im, r) in enumerate(cells):
        x = pad + (c % cols) * (tile + pad)
        y = pad + (c // cols) * (tile + caption_h + pad)
        grid.paste(im.convert("RGB").resize((tile, tile), Image.NEAREST), (x, y))
        if r is not None and r["chosen"]:
            draw.rectangle([x - 3, y - 3, x + tile + 2, y + tile + 2], outline=(0, 160, 0), width=3)
        ty = y + tile + 2
        draw.text((x, ty), title, fill="black")
        if r is None:
            continue
        for d in dims:
            ty += line
            draw.text((x, ty), f"{ABBREV.get(d, d[:4])} {_fmt(r['mu'].get(d), 2)} +- {_fmt(r['sigma'].get(d), 2)}",
                      fill="black")
        ty += line
        draw.text((x, ty), f"agg {_fmt(r['aggregate'], 2)}  lcb {_fmt(r['lcb'], 2)}", fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path


# ---------------------------------------------------------------------------------------------- the sweep
def _parse_ns(text: str) -> list[int]:
    from editrl.io import DataError

    try:
        ns = sorted({int(x) for x in str(text).split(",") if x.strip()})
    except ValueError as err:
        raise DataError("--ns", f"expected comma-separated integers like 1,2,4,8, got {text!r}") from err
    if not ns or ns[0] < 1:
        raise DataError("--ns", f"N values must be >= 1, got {text!r}")
    return ns


METHOD_LABELS = {"aggregate": "reward: aggregate", "lcb": "reward: lcb", "random": "random choice",
                 "oracle_best": "oracle best (bound)"}


def sweep_command(args: argparse.Namespace) -> int:
    from rich.table import Table

    from editrl.io import DataError
    from editrl.report import console as make_console
    from rollout.best_of_n import _num, sweep

    ns = _parse_ns(args.ns)
    if args.tasks < 1:
        raise DataError("--tasks", f"need at least one task, got {args.tasks}")
    if args.noise_level < 0:
        raise DataError("--noise-level", f"must be >= 0 (0: ODE candidates, differing in their initial noise), "
                                         f"got {args.noise_level}")
    editor, client = load_pieces(args)
    size = args.size or getattr(getattr(editor, "config", None), "image_size", None) or 32
    rules = [args.select] + [r for r in ("aggregate", "lcb") if r != args.select]
    res = sweep(editor, client, num_tasks=args.tasks, ns=ns, k=args.k, num_steps=args.steps,
                noise_level=args.noise_level, guidance=args.guidance, seed=args.seed, task_seed=args.task_seed,
                size=size, batch_size=args.batch_size, progress=not args.no_progress, rules=rules)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = res.pop("tasks")
    doc = {"editor": args.editor, "reward": reward_spec(args), "select": args.select, "k": args.k,
           "steps": args.steps, "noise_level": args.noise_level, "seed": args.seed, "size": size, **res,
           "pairwise_agreement": _num(res["pairwise_agreement"]),
           "per_task": [{"instruction": t.instruction,
                         "reward": [_num(getattr(s, "score", None)) for s in t.scores],
                         "reward_sigma": [_num(getattr(s, "score_sigma", None)) for s in t.scores],
                         "oracle": t.oracle} for t in tasks]}
    (out / "sweep.json").write_text(json.dumps(doc, indent=2) + "\n")
    plot_sweep(res["results"], out / "sweep.png", title=f"best-of-N on {res['num_tasks']} held-out editworld tasks")

    table = Table(title=f"best-of-N on {res['num_tasks']} held-out editworld tasks (oracle scores of the chosen edit, "
                        f"1-4; k = {args.k:g})")
    for col in ("N", "method", "instr. following", "visual quality", "mean", "+- se"):
        table.add_column(col, justify="right" if col not in ("method",) else "left")
    for n, methods in res["results"].items():
        for m, v in methods.items():
            style = "bold" if m == args.select else None
            table.add_row(n, METHOD_LABELS.get(m, m), _fmt(v["instruction_following"]), _fmt(v["visual_quality"]),
                          _fmt(v["mean"]), _fmt(v["se"]), style=style)
        table.add_section()
    console = make_console()
    console.print(table)
    gains = Table(title=f"the reward's pick ({args.select}) against a random one, oracle mean of the dimensions, "
                        f"paired over tasks, 95% t-interval")
    for col in ("N", "pick - random", "interval", "oracle best - random", "recovered"):
        gains.add_column(col, justify="right")
    for n, g in res["gains"].items():
        gains.add_row(n, f"{g['gain']:+.3f}", f"[{g['ci_low']:+.3f}, {g['ci_high']:+.3f}]", f"{g['headroom']:+.3f}",
                      f"{100 * g['recovered']:.0f}%" if math.isfinite(g["recovered"]) else "-")
    console.print(gains)
    console.print(f"within-task reward/oracle pairwise agreement: {_fmt(res['pairwise_agreement'])}; "
                  f"wrote {out / 'sweep.json'} and {out / 'sweep.png'}")
    return 0


def plot_sweep(results: dict[str, dict[str, dict[str, float]]], path: str | Path, title: str = "") -> Path:
    """Oracle score of the chosen edit against N: one panel per dimension plus their mean, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from editrl.report import save_figure

    ns = [int(n) for n in results]
    methods = list(next(iter(results.values())))
    panels = [k for k in next(iter(next(iter(results.values())).values())) if k != "se"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    styles = {"random": dict(linestyle="--", color="gray"), "oracle_best": dict(linestyle=":", color="black")}
    for ax, panel in zip(axes[0], panels):
        for i, m in enumerate(methods):
            ys = [results[str(n)][m][panel] for n in ns]
            kw = styles.get(m, {})
            if panel == "mean":  # error bars of the methods side by side (x nudged on the log axis)
                se = [results[str(n)][m]["se"] for n in ns]
                xs = [n * 2 ** (0.06 * (i - (len(methods) - 1) / 2)) for n in ns]
                ax.errorbar(xs, ys, yerr=se, marker="o", capsize=2, elinewidth=0.8, label=METHOD_LABELS.get(m, m), **kw)
            else:
                ax.plot(ns, ys, marker="o", label=METHOD_LABELS.get(m, m), **kw)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel("N (candidates)")
        ax.set_ylabel("oracle score (1-4)")
        ax.set_title(panel.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, dpi=100)
