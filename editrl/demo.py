"""`editrl demo`: the whole story on the embedded default, in one command and one HTML report.
long: the demo's five stages, the statistics that turn each stage's outputs into a verdict, and the report's
sections live together so that what a stage writes and what the report says about it are read side by side.

Stages, each through the same public functions (mostly the very CLI commands) a user calls:
  WORLD      ``editrl world generate`` + ``check``: an editworld dataset with exact ground truth
  REWARD     ``editrl reward eval``: pairwise accuracy of the reward model on the held-out bench split beside
             baselines. The reward is ``--reward CKPT``, else the shipped ``reward/weights/editworld-tiny`` if it
             holds weights, else one the demo trains briefly itself with ``editrl reward train`` on the world it
             generated -- the report says which.
  CURATE     ``editrl curate --top-fraction 0.5`` on some training rows: does the reward keep the better edits?
  BEST-OF-N  ``editrl best-of-n --sweep``: oracle score of the reward's pick among N samples, N = 1, 2, 4, 8, 16 on
             64 held-out tasks, ODE candidates (noise 0, 8 steps; they differ in their initial noise) -- the
             documented measurement (docs/best-of-n.md), command for command
  GRPO       ``editrl policy grpo`` (configs/policy/editworld-nft-kl.yaml, the learned-reward recipe: DiffusionNFT
             with a KL guard, shrunk): a few RL steps of the tiny editor against the reward; learned-reward and held-out oracle curves, then the final policy and the
             starting editor re-evaluated on the same held-out tasks (paired) for the gain's interval
The editor is the shipped ``rollout/weights/editworld-tiny`` when present, else a fresh (random) tiny editor.
Each stage writes into ``out/<stage>/``; ``out/demo.json`` records what ran (commands, config files and their
hashes, seeds, package versions, git commit, date, stage wall times, also in ``out/timings.json``), and the report
``out/report.html`` is rendered from those files alone (``render(out)`` redraws it without rerunning anything).
Every verdict in the report is a 95% interval with "significant" or "not significant" in words.
The default size takes about 3-6 minutes on 2 CPU cores; ``--quick`` shrinks every stage to a smoke test
(tests/editrl/test_demo.py); ``--skip curate,grpo`` skips stages.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from editrl.report import Estimate, HtmlReport, cluster_bootstrap, file_sha256, git_commit, package_versions, t_interval

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_REWARD = ROOT / "reward" / "weights" / "editworld-tiny"
REWARD_PRESET = ROOT / "configs" / "reward" / "editworld-tiny.yaml"
GRPO_PRESET = ROOT / "configs" / "policy" / "editworld-nft-kl.yaml"
STAGES = ("world", "reward", "curate", "best-of-n", "grpo")
PACKAGES = ("editrl", "torch", "transformers", "diffusers", "ray", "numpy")
# lcb = mu - k * sigma is shown beside aggregate only when it carries information: when it picks a different candidate
# than aggregate for at least this share of the (task, N) choices of the sweep (one differing choice in 64 x 5 is
# enough); otherwise its line would lie exactly on top of aggregate's.
LCB_MIN_DIFFERING = 1e-9
UNITS = ("Units. Oracle and true scores are on the editworld's 1-4 scale (4 = perfect; instruction following IF and "
         "visual quality VQ). The reward model's mu (per dimension) and its aggregate 'score' are NOT on that "
         "scale: they are unbounded, logit-like ranking scores{range} whose zero is arbitrary; only "
         "differences between candidates of one instruction mean something (mu_a - mu_b is about the log-odds "
         "that a is preferred to b). Sigma is the model's predicted spread of mu on the same scale.")


@dataclass
class Sizes:
    """How big each stage is; ``QUICK`` is the smoke-test size."""

    groups: int = 300
    reward_steps: int = 300  # a brief reward training run when no trained reward model is available
    reward_minutes: float = 4.0  # its time budget
    curate_rows: int = 256
    bon_tasks: int = 64  # the best-of-N sweep: exactly the documented measurement (docs/best-of-n.md)
    bon_ns: str = "1,2,4,8,16"
    bon_steps: int = 8
    bon_noise: float = 0.0  # ODE candidates, as the editor is evaluated; they differ in their initial noise
    grpo_steps: int = 8
    grpo_prompts: int = 4
    grpo_group: int = 8
    grpo_sampling_steps: int = 8
    grpo_eval_every: int = 4
    grpo_eval_tasks: int = 24
    grpo_reeval_tasks: int = 128  # the paired before/after re-evaluation behind the GRPO verdict
    grid_rows: int = 6  # held-out edits shown in the report


QUICK = Sizes(groups=12, reward_steps=4, reward_minutes=1.0, curate_rows=24, bon_tasks=2, bon_ns="1,2", bon_steps=3,
              grpo_steps=1, grpo_prompts=2, grpo_group=2, grpo_sampling_steps=3, grpo_eval_every=0, grpo_eval_tasks=2,
              grpo_reeval_tasks=4, grid_rows=2)


@dataclass
class Record:
    """What the demo ran, for the report's provenance block (``out/demo.json``)."""

    commands: list[list[str]] = field(default_factory=list)  # [stage, command]
    configs: list[str] = field(default_factory=list)  # config files used, absolute paths
    seeds: dict[str, Any] = field(default_factory=dict)

    def command(self, stage: str, argv: list[str] | str) -> None:
        import shlex

        self.commands.append([stage, argv if isinstance(argv, str) else "editrl " + shlex.join(argv)])

    def config(self, *paths: Path | str) -> None:
        for p in paths:
            if str(p) not in self.configs:
                self.configs.append(str(p))


def _cli(argv: list[str], record: Record, stage: str) -> None:
    from editrl.cli import main

    record.command(stage, argv)
    code = main(argv)
    if code:
        raise RuntimeError(f"editrl {' '.join(argv)} exited with {code}")


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    return path


def _rel(path: Path | str) -> str:
    """``path`` relative to the repository when inside it (the report reads better), else as given."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def has_weights(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.safetensors"))


# ---------------------------------------------------------------------------------------------- models
def pick_editor(out: Path, seed: int) -> tuple[str, str]:
    """(editor spec, how it is described in the report)."""
    from rollout.registry import shipped_tiny_dir

    shipped = shipped_tiny_dir()
    if (shipped / "editor_config.json").is_file():
        return "editworld-tiny", f"the shipped tiny editor ({_rel(shipped)})"
    from rollout.tiny_editor import TinyEditor

    folder = out / "editor-fresh"
    TinyEditor.from_config(seed=seed).save_pretrained(folder)
    return str(folder), ("a FRESH, UNTRAINED tiny editor (random weights; no shipped editor was found at "
                         f"{_rel(shipped)}), so its edits are noise")


def train_reward(out: Path, data: Path, sizes: Sizes, seed: int, record: Record) -> tuple[Path, str]:
    """Train a tiny reward model briefly with ``editrl reward train``'s functions; (checkpoint, description)."""
    from editrl.config import load_config
    from reward.train.config import RewardTrainConfig
    from reward.train.trainer import train as run_training

    run_dir = _fresh(out / "reward-train")
    overrides = [f"data.train={data}", "data.extra_train=[]", f"out_dir={run_dir}", f"train.max_steps={sizes.reward_steps}",
                 f"train.time_budget_minutes={sizes.reward_minutes}", f"train.eval_every={max(1, sizes.reward_steps // 3)}",
                 "train.save_every=0", f"train.seed={seed}", "data.max_val_pairs=256"]
    cfg = load_config(RewardTrainConfig, str(REWARD_PRESET), overrides)
    record.command("reward", ["reward", "train", "--config", _rel(REWARD_PRESET), *overrides])
    record.config(REWARD_PRESET)
    t = time.perf_counter()
    result = run_training(cfg, progress=False)
    if result.final_dir is None:
        raise RuntimeError("the brief reward training run left no final checkpoint")
    acc = "n/a" if result.val_accuracy is None else f"{result.val_accuracy:.3f}"
    text = (f"trained BRIEFLY BY THIS DEMO ({result.step} steps of batch {cfg.train.batch_size}, "
            f"{time.perf_counter() - t:.0f} s, validation pairwise accuracy {acc}) with `editrl reward train "
            f"--config configs/reward/editworld-tiny.yaml` on the world generated above, because no trained tiny "
            f"reward model is shipped yet. It is NOT the shipped model; its accuracy is whatever such a short run "
            f"gives (the preset trains for up to 25 minutes on a 3,000-group world)")
    return result.final_dir, text


# ---------------------------------------------------------------------------------------------- stages (run)
def stage_world(out: Path, groups: int, seed: int, record: Record) -> Path:
    from editworld.check import check_dataset
    from editworld.config import WorldConfig
    from editworld.dataset import generate

    data = _fresh(out / "world")
    record.command("world", ["world", "generate", "--out", str(data), "--groups", str(groups), "--seed", str(seed)])
    generate(data, WorldConfig(groups=groups, seed=seed))
    record.command("world", ["world", "check", str(data)])
    check_dataset(data)
    record.config(data / "config.yaml")
    return data


def stage_reward(out: Path, data: Path, checkpoint: Path, record: Record, max_items: int | None) -> None:
    from reward.eval.editworld_bench import run_editworld_eval

    folder = _fresh(out / "reward")
    argv = ["reward", "eval", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(folder),
            *(["--max-items", str(max_items)] if max_items else [])]
    record.command("reward", "# in-process: reward.eval.editworld_bench.run_editworld_eval, the editworld part of")
    record.command("reward", argv)
    run_editworld_eval(checkpoint, data, out_dir=folder, max_items=max_items, progress=False)


def stage_curate(out: Path, data: Path, checkpoint: Path, rows: int, record: Record) -> None:
    """``editrl curate --top-fraction 0.5`` on the first ``rows`` training candidates of the world."""
    manifest = data / "curate_input.jsonl"  # beside manifest.jsonl so its relative image paths stay valid
    lines = [ln for ln in (data / "manifest.jsonl").read_text().splitlines() if '"split": "train"' in ln][:rows]
    manifest.write_text("\n".join(lines) + "\n")
    cur = _fresh(out / "curate")
    _cli(["curate", "--input", str(manifest), "--reward", str(checkpoint), "--out", str(cur),
          "--top-fraction", "0.5", "--no-progress"], record, "curate")
    record.config(cur / "config.yaml")


def stage_best_of_n(out: Path, editor: str, checkpoint: Path, sizes: Sizes, seed: int, record: Record) -> None:
    bon = _fresh(out / "best-of-n")
    _cli(["best-of-n", "--sweep", "--editor", editor, "--reward", str(checkpoint), "--out", str(bon),
          "--tasks", str(sizes.bon_tasks), "--ns", sizes.bon_ns, "--steps", str(sizes.bon_steps),
          "--noise-level", f"{sizes.bon_noise:g}", "--seed", str(seed), "--no-progress"], record, "best-of-n")


def stage_grpo(out: Path, editor: str, checkpoint: Path, sizes: Sizes, seed: int, record: Record) -> None:
    run_dir = _fresh(out / "grpo")
    _cli(["policy", "grpo", "--config", _rel(GRPO_PRESET), f"out={run_dir}", f"seed={seed}",
          f"steps={sizes.grpo_steps}", f"checkpoint_every={sizes.grpo_steps}", "resume=false",
          f"editor.spec={editor}", f"reward.client={checkpoint}", f"data.prompts_per_step={sizes.grpo_prompts}",
          f"sampling.group_size={sizes.grpo_group}", f"sampling.num_steps={sizes.grpo_sampling_steps}",
          f"eval.every={sizes.grpo_eval_every}", f"eval.num_tasks={sizes.grpo_eval_tasks}",
          f"eval.num_steps={sizes.grpo_sampling_steps}"], record, "grpo")
    record.config(GRPO_PRESET, run_dir / "config.yaml")
    record.command("grpo", f"# in-process: editrl.demo.reevaluate_grpo -- the final policy and its starting editor "
                           f"(adapter off) on the same {sizes.grpo_reeval_tasks} held-out tasks, ODE, "
                           f"{sizes.grpo_sampling_steps} steps, seed {seed} (as `editrl policy margins {run_dir} --tasks "
                           f"{sizes.grpo_reeval_tasks}`, kept per task)")
    reevaluate_grpo(run_dir, sizes.grpo_reeval_tasks, seed, sizes.grpo_sampling_steps, sizes.grid_rows)


def reevaluate_grpo(run_dir: Path, num_tasks: int, seed: int, num_steps: int, grid_rows: int) -> dict:
    """The final policy of a GRPO run and its starting editor (adapter disabled) on the same held-out tasks with the
    same initial noise, kept per task: writes ``reeval.json`` and, for the first ``grid_rows`` tasks, 32 px tiles
    (source, before, after, target) under ``held_out/``."""
    from policy.config import load_run_config
    from rollout.held_out import edit_tasks, held_out_tasks, oracle_scores_of
    from rollout.registry import load_editor

    size = load_run_config(run_dir).data.image_size
    editor = load_editor(f"rl:{run_dir}")
    tasks = held_out_tasks(num_tasks, size)
    with editor.reference():
        before = edit_tasks(editor, tasks, num_steps, 64, seed, size)
    after = edit_tasks(editor, tasks, num_steps, 64, seed, size)
    tiles = run_dir / "held_out"
    tiles.mkdir(parents=True, exist_ok=True)
    for i, task in enumerate(tasks[:grid_rows]):
        for name, im in (("source", task.source_image(size)), ("before", before[i]), ("after", after[i]),
                         ("target", task.target_image(size))):
            im.convert("RGB").save(tiles / f"{i:02d}_{name}.png")
    doc = {"tasks": num_tasks, "seed": seed, "ode_steps": num_steps, "image_size": size,
           "instructions": [t.instruction for t in tasks],
           "before": oracle_scores_of(tasks, before), "after": oracle_scores_of(tasks, after)}
    (run_dir / "reeval.json").write_text(json.dumps(doc, indent=1) + "\n")
    return doc


# ---------------------------------------------------------------------------------------------- analyses
def _dims() -> list[str]:
    from editrl.dimensions import DIMENSIONS

    return list(DIMENSIONS)


_SHORT = {"instruction_following": "IF", "visual_quality": "VQ", "mean": "mean of IF and VQ"}


def reward_accuracy(out: Path, data: Path) -> dict[str, Estimate]:
    """The reward's pairwise bench accuracy with a 95% bootstrap interval over groups (a group's pairs share one
    instruction and are not independent), and its margin over the pixel-difference heuristic, paired."""
    import numpy as np

    from editrl.io import iter_jsonl
    from reward.eval.editworld_bench import human_pairs, load_bench_items, pixel_heuristic_scorer

    scores = {row["id"]: float(row["score"]) for _, row in iter_jsonl(out / "reward" / "scores_reward.jsonl")}
    items = [it for it in load_bench_items(data) if it.id in scores]
    first, second, label = human_pairs(items)
    keep = label != 0
    first, second, label = first[keep], second[keep], label[keep]

    def right(s: np.ndarray) -> np.ndarray:
        diff = s[first] - s[second]
        return np.where(diff == 0, 0.5, (np.sign(diff) == label).astype(float))

    model = right(np.array([scores[it.id] for it in items]))
    pixel = right(np.array(pixel_heuristic_scorer(items), dtype=float))
    by_group: dict[str, list[int]] = {}
    for p, i in enumerate(first):
        by_group.setdefault(items[i].group_id, []).append(p)
    clusters = [np.array(v) for v in by_group.values()]
    how = f"bootstrap over {len(clusters)} bench groups, {len(model)} non-tied pairs"

    def acc(cs: list) -> float:
        idx = np.concatenate(cs)
        return float(model[idx].mean())

    def margin(cs: list) -> float:
        idx = np.concatenate(cs)
        return float(model[idx].mean() - pixel[idx].mean())

    return {"accuracy": Estimate("Reward pairwise accuracy on the bench (chance = 0.5)", *cluster_bootstrap(clusters, acc),
                                 null=0.5, how=how),
            "over_pixel": Estimate("Reward accuracy minus the pixel-difference heuristic's, same pairs",
                                   *cluster_bootstrap(clusters, margin), how=how)}


def curation_analysis(out: Path) -> dict[str, Any]:
    """Kept rows against a random half (whose expected true score is that of all rows), per dimension and on the
    mean, with 95% bootstrap intervals over groups; and the rows ranked highest and lowest."""
    import numpy as np

    from editrl.io import iter_jsonl

    dims = _dims()
    rows = [row for _, row in iter_jsonl(out / "curate" / "all_scored.jsonl")]
    by_group: dict[str, list[dict]] = {}
    for r in rows:
        by_group.setdefault(str(r.get("group_id", r["id"])), []).append(r)
    clusters = list(by_group.values())

    def value(r: dict, d: str) -> float:
        t = r["true_scores"]
        return float(np.mean([t[x] for x in dims])) if d == "mean" else float(t[d])

    def gain(d: str):
        def stat(cs: list) -> float:
            rs = [r for c in cs for r in c]
            kept = [value(r, d) for r in rs if r.get("kept")]
            return float(np.mean(kept) - np.mean([value(r, d) for r in rs])) if kept else math.nan
        return stat

    how = f"bootstrap over {len(clusters)} groups, {len(rows)} rows"
    est = {d: Estimate(f"Curation: true {_SHORT[d]} of the kept half minus a random half", *cluster_bootstrap(clusters, gain(d)),
                       how=how) for d in (*dims, "mean")}
    table = []
    for name, rs in (("kept", [r for r in rows if r.get("kept")]), ("dropped", [r for r in rows if not r.get("kept")]),
                     ("all (= a random half, in expectation)", rows)):
        table.append([name, len(rs), *[float(np.mean([value(r, d) for r in rs])) if rs else "-" for d in (*dims, "mean")]])
    ranked = sorted(rows, key=lambda r: float(r["reward"]["rank_key"]))
    return {"estimates": est, "table": table, "lowest": ranked[:4], "highest": ranked[::-1][:4], "rows": len(rows)}


def best_of_n_analysis(doc: dict) -> dict[str, Any]:
    """From a sweep's per-task scores: each rule's pick against a random pick, per task, with t-intervals over tasks;
    the oracle's best candidate chosen separately on each plotted quantity (so it bounds that quantity); and
    whether ``lcb`` ever picks differently from ``aggregate`` (``LCB_MIN_DIFFERING``)."""
    import numpy as np

    from rollout.best_of_n import choose

    dims = _dims()
    ns, k = [int(n) for n in doc["ns"]], float(doc.get("k", 1.0))
    rules = [r for r in ("aggregate", "lcb") if any(r in m for m in doc["results"].values())] or ["aggregate"]
    quantities = [*dims, "mean"]

    def q(o: dict, name: str) -> float:
        return float(np.mean([o[d] for d in dims])) if name == "mean" else float(o[name])

    curves: dict[str, dict[str, list[float]]] = {m: {x: [] for x in quantities} for m in (*rules, "random", "oracle_best")}
    gains: dict[str, list[Estimate]] = {r: [] for r in rules}
    differing = choices = 0
    sigmas = [s for t in doc["per_task"] for s in t.get("reward_sigma", []) if s is not None]
    for n in ns:
        per_rule: dict[str, list[dict]] = {r: [] for r in rules}
        rand, best = [], {x: [] for x in quantities}
        for t in doc["per_task"]:
            oracle = t["oracle"][:n]
            scored = [{"score": s, "score_sigma": sg if sg is not None else 0.0,
                       "error": None if s is not None else "not scored"}
                      for s, sg in zip(t["reward"][:n], (t.get("reward_sigma") or [None] * n)[:n])]
            mean_o = {d: float(np.mean([o[d] for o in oracle])) for d in dims}
            rand.append(mean_o)
            picks = {}
            for r in rules:
                try:
                    picks[r] = choose(scored, r, k)
                    per_rule[r].append(oracle[picks[r]])
                except ValueError:
                    per_rule[r].append(mean_o)
            if "lcb" in picks and "aggregate" in picks:
                choices += 1
                differing += picks["lcb"] != picks["aggregate"]
            for x in quantities:
                best[x].append(max(q(o, x) for o in oracle))
        for x in quantities:
            curves["random"][x].append(float(np.mean([q(o, x) for o in rand])))
            curves["oracle_best"][x].append(float(np.mean(best[x])))
            for r in rules:
                curves[r][x].append(float(np.mean([q(o, x) for o in per_rule[r]])))
        for r in rules:
            diffs = [q(a, "mean") - q(b, "mean") for a, b in zip(per_rule[r], rand)]
            gains[r].append(Estimate(f"N = {n}: {r} pick minus random pick, oracle mean of IF and VQ",
                                     *t_interval(diffs), how=f"t-interval over {len(diffs)} tasks"))
    share = differing / choices if choices else 0.0
    show_lcb = "lcb" in rules and share >= LCB_MIN_DIFFERING and differing > 0
    headroom = None
    if ns[-1] > 1:
        top = ns.index(ns[-1])
        span = curves["oracle_best"]["mean"][top] - curves["random"]["mean"][top]
        headroom = (curves["aggregate"]["mean"][top] - curves["random"]["mean"][top]) / span if span > 0 else None
    return {"ns": ns, "k": k, "curves": curves, "gains": gains, "lcb_differing": differing, "lcb_choices": choices,
            "show_lcb": show_lcb, "sigma_median": float(np.median(sigmas)) if sigmas else math.nan,
            "sigma_max": float(np.max(sigmas)) if sigmas else math.nan, "headroom": headroom}


def plot_best_of_n(an: dict, path: Path, title: str) -> Path:
    """Three panels of oracle score against N (IF, VQ, their mean; the oracle-best line chosen on each panel's own
    quantity) and a fourth of each rule's gain over a random pick with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from editrl.report import save_figure

    plt.rcParams.update({"font.size": 12})
    ns = an["ns"]
    rules = ["aggregate", *(["lcb"] if an["show_lcb"] else [])]
    labels = {"aggregate": "reward pick (aggregate)", "lcb": f"reward pick (lcb, k = {an['k']:g})",
              "random": "random pick", "oracle_best": "oracle's best (bound)"}
    styles = {"random": dict(linestyle="--", color="gray"), "oracle_best": dict(linestyle=":", color="black"),
              "aggregate": dict(color="tab:blue"), "lcb": dict(color="tab:orange")}
    fig, axes = plt.subplots(2, 2, figsize=(10.6, 8.0))
    for ax, x in zip(axes.flat[:3], [*_dims(), "mean"]):
        for m in (*rules, "random", "oracle_best"):
            ax.plot(ns, an["curves"][m][x], marker="o", label=labels[m], **styles[m])
        ax.set_title(f"oracle {_SHORT[x]} of the chosen edit")
        ax.set_ylabel("oracle score (1-4)")
    ax = axes.flat[3]
    for i, r in enumerate(rules):
        est = an["gains"][r]
        xs = [n * 2 ** (0.08 * i) for n in ns]
        ys = [e.value for e in est]
        err = [[e.value - e.lo if math.isfinite(e.lo) else 0 for e in est],
               [e.hi - e.value if math.isfinite(e.hi) else 0 for e in est]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=4, label=labels[r], **styles[r])
    ax.axhline(0, color="gray", linestyle="--", lw=1)
    ax.set_title("gain over a random pick (mean), 95% interval")
    ax.set_ylabel("oracle score difference")
    for ax in axes.flat:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel("N (candidates)")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=11)
    fig.suptitle(title)
    return save_figure(fig, path, dpi=100)


def plot_curation(out: Path, path: Path) -> Path:
    """Histograms of the reward's mu per dimension and of the ranking key over the scored rows, the kept ones in
    blue and the cut dashed, drawn at the size the report shows them (readable axis labels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from editrl.io import iter_jsonl
    from editrl.report import save_figure

    plt.rcParams.update({"font.size": 12})
    rows = [row for _, row in iter_jsonl(out / "curate" / "all_scored.jsonl")]
    kept = [r for r in rows if r.get("kept")]
    panels = [(f"reward mu, {_SHORT[d]}", lambda r, d=d: float(r["reward"]["mu"][d])) for d in _dims()]
    panels.append(("ranking key (aggregate score)", lambda r: float(r["reward"]["rank_key"])))
    fig, axes = plt.subplots(1, len(panels), figsize=(10.6, 3.6), squeeze=False)
    for ax, (title, get) in zip(axes[0], panels):
        values = [get(r) for r in rows]
        bins = max(5, min(30, len(values) // 4))
        ax.hist(values, bins=bins, color="lightgray", label=f"all ({len(rows)})")
        ax.hist([get(r) for r in kept], bins=bins, range=(min(values), max(values)), color="tab:blue",
                label=f"kept ({len(kept)})")
        ax.set_title(title)
        ax.set_xlabel("reward scale (logit-like, not 1-4)")
        ax.set_ylabel("rows")
    if kept:
        axes[0][-1].axvline(min(float(r["reward"]["rank_key"]) for r in kept), color="red", linestyle="--",
                            label="cut")
    axes[0][-1].legend(fontsize=10)
    return save_figure(fig, path, dpi=100)


def grpo_analysis(run_dir: Path) -> dict[str, Any]:
    """Held-out oracle gain (final policy minus starting editor) per dimension and on the mean, paired per task."""
    import numpy as np

    doc = json.loads((run_dir / "reeval.json").read_text())
    dims = _dims()
    before = {**{d: doc["before"][d] for d in dims}, "mean": list(np.mean([doc["before"][d] for d in dims], axis=0))}
    after = {**{d: doc["after"][d] for d in dims}, "mean": list(np.mean([doc["after"][d] for d in dims], axis=0))}
    how = f"paired t-interval over {doc['tasks']} held-out tasks, one training seed"
    est = {x: Estimate(f"GRPO: held-out oracle {_SHORT[x]}, final policy minus starting editor",
                       *t_interval([a - b for a, b in zip(after[x], before[x])]), how=how) for x in before}
    return {"doc": doc, "estimates": est, "before": {x: float(np.mean(v)) for x, v in before.items()},
            "after": {x: float(np.mean(v)) for x, v in after.items()}}


# ---------------------------------------------------------------------------------------------- sections (render)
def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def section_world(out: Path, report: HtmlReport, meta: dict) -> None:
    data = out / "world"
    summary, check = _json(data / "summary.json"), _json(data / "check.json")
    report.heading("1. The editworld")
    report.text("A procedural editing world with exact ground truth: scenes of coloured shapes, instructions "
                "from a grammar, seven candidate edits per instruction from simulated editors with known failure "
                "modes, simulated annotators, and a pixel-level oracle that scores any image on 1-4. Read the table "
                "as: how much data there is, and how well the oracle and the (noisy) annotators agree with the truth.")
    report.table(["measure", "value"], [
        ["groups / candidates", f"{summary['groups']} / {summary['candidates']}"],
        ["training pairs (ties, disentangle-able ties)",
         f"{summary['train_pairs']} ({summary['tie_pairs']}, {summary['disentangle_pairs']})"],
        *[[f"oracle vs true Spearman, {d}", v] for d, v in check["oracle_spearman"].items()],
        *[[f"annotator agreement (exact), {d}", v["exact"]] for d, v in check["annotator_agreement"].items()],
    ])
    report.image(data / "check_histograms.png", "oracle scores (1-4) by true score")


def section_reward(out: Path, report: HtmlReport, meta: dict, verdicts: list) -> None:
    results = _json(out / "reward" / "editworld_eval.json")["results"]
    est = reward_accuracy(out, out / "world")
    verdicts.extend([("reward", est["accuracy"]), ("reward", est["over_pixel"])])
    report.heading("2. The reward model (EditReward, tiny Qwen2.5-VL)")
    report.text(f"The reward model used by every later stage: {meta['reward_text']}.")
    report.verdict(est["accuracy"])
    report.verdict(est["over_pixel"])
    report.text("Pairwise accuracy on the benchmark split (three annotators; tied human pairs excluded), "
                "for the reward model and baselines. The bench split is never trained on. 0.5 is chance; a useful "
                "reward must beat the pixel-difference heuristic. The interval resamples whole groups because the "
                "pairs of one instruction are not independent.")
    report.table(["method", "pairwise accuracy", "pairs"],
                 [[name, r["pairwise_accuracy"], r["pairs"]] for name, r in results.items()])
    curve = out / "reward-train" / "final" / "training_curve.png"
    if not curve.is_file():
        curve = out / "reward-train" / "training_curve.png"
    if "BRIEFLY" in meta["reward_text"] and curve.is_file():
        report.image(curve, "the demo's brief reward training run")


def section_curate(out: Path, report: HtmlReport, meta: dict, verdicts: list) -> None:
    cur = out / "curate"
    summary = _json(cur / "summary.json")
    an = curation_analysis(out)
    verdicts.append(("curate", an["estimates"]["mean"]))
    report.heading("3. Curation: keep the top half of a dataset by reward")
    report.text(f"`editrl curate` scored {summary['scored']} training candidates of the world with the reward model "
                f"and kept the best half by its ranking key (the aggregate reward score). Each row has an exact true "
                f"score (1-4), so we can check the claim: if the reward is useful, the kept half's true scores are "
                f"higher than a random half's (whose expected score is that of all rows).")
    for d in ("mean", *_dims()):
        report.verdict(an["estimates"][d])
    report.table(["measure", "value"], [[k, summary[k]] for k in ("total", "scored", "rejected", "kept")])
    report.table(["rows", "n", "true IF (mean, 1-4)", "true VQ (mean, 1-4)", "true mean (1-4)"], an["table"])
    report.image(plot_curation(out, cur / "demo_histograms.png"),
                 "the reward's mu per dimension and its ranking key over the scored rows (the reward's own unbounded, "
                 "logit-like scale, not 1-4); kept rows in blue, the cut dashed")

    def tile(path: str) -> Any:
        p = Path(path)
        for base in (cur, out / "world"):
            if (base / p).is_file():
                return (base / p).read_bytes()
        return "(missing)"

    rows = []
    for name, rs in (("lowest", an["lowest"]), ("highest", an["highest"])):
        for i, r in enumerate(rs, 1):
            mu = r["reward"]["mu"]
            rows.append([f"{name} {i}", tile(r["source"]), tile(r["edited"]), r["instruction"],
                         f"{float(r['reward']['rank_key']):+.2f}",
                         " / ".join(f"{float(mu[d]):+.2f}" for d in _dims()),
                         " / ".join(str(r["true_scores"][d]) for d in _dims()), "yes" if r.get("kept") else "no"])
    report.text("The rows the reward ranked lowest and highest (images upscaled to 128 px, nearest neighbour):")
    report.table(["rank", "source", "edited", "instruction", "ranking key (reward)", "reward mu IF / VQ",
                  "true IF / VQ (1-4)", "kept"], rows)


def section_best_of_n(out: Path, report: HtmlReport, meta: dict, verdicts: list) -> None:
    bon = out / "best-of-n"
    doc = _json(bon / "sweep.json")
    an = best_of_n_analysis(doc)
    fig = plot_best_of_n(an, bon / "demo_sweep.png", f"best-of-N on {doc['num_tasks']} held-out editworld tasks "
                                                     f"({_sampling(doc)})")
    n_top = an["ns"][-1]
    verdicts.extend(("best-of-n", e) for n, e in zip(an["ns"], an["gains"]["aggregate"]) if n > 1)
    report.heading("4. Best-of-N: sample N edits, let the reward pick one")
    report.text(f"For {doc['num_tasks']} held-out tasks the editor samples {n_top} edits once "
                f"({doc['steps']} sampling steps, {_sampling(doc)}, seed "
                f"{doc['seed']}); for each N the reward model picks one of the first N and the oracle scores the pick "
                f"(1-4). It is the documented measurement's command (docs/best-of-n.md; the reward model card's "
                f"figures). 'random pick' is the expected score of a uniformly random choice among the same N, "
                f"'oracle's best' the best of the N by the oracle itself, chosen separately on each plotted quantity "
                f"so that it bounds that quantity. If the reward helps, its pick beats a random pick with an interval "
                f"above 0.")
    ranked = [(n, e) for n, e in zip(an["ns"], an["gains"]["aggregate"]) if n > 1]
    sig = [n for n, e in ranked if e.significant]
    if ranked:
        if not sig:
            report.text("Verdict: at no N is the reward's pick significantly better than a random pick "
                        "(every 95% interval over tasks includes 0): on these tasks the result is null.")
        else:
            report.text(f"Verdict: the reward's pick beats a random pick significantly at N = "
                        f"{', '.join(map(str, sig))}; at the other N the difference is not significant. (Each N "
                        f"has its own interval, not corrected for looking at {len(ranked)} N; the N share their "
                        f"first candidates, so the intervals are not independent.)")
    for _, e in ranked:
        report.verdict(e)
    if an["headroom"] is not None:
        report.text(f"At N = {n_top} the reward's pick recovers {100 * an['headroom']:.0f}% of the oracle-best "
                    f"headroom over a random pick (on the mean of IF and VQ).")
    report.image(fig, "oracle score of the chosen edit against N; bottom right: the gain over a random pick with its "
                      "95% interval over tasks (the dashed line is no gain)")
    rules = ["aggregate", *(["lcb"] if an["show_lcb"] else [])]
    rows = []
    for i, n in enumerate(an["ns"]):
        for m in (*rules, "random", "oracle_best"):
            c = an["curves"][m]
            gain = (an["gains"][m][i].interval() if m in an["gains"] and n > 1 else "")
            rows.append([n, {"aggregate": "reward: aggregate", "lcb": "reward: lcb", "random": "random pick",
                             "oracle_best": "oracle's best (bound)"}[m],
                         c["instruction_following"][i], c["visual_quality"][i], c["mean"][i], gain])
    report.table(["N", "method", "oracle IF", "oracle VQ", "oracle mean", "gain over random [95%]"], rows)
    rule = (f"lcb (mu - k sigma, k = {an['k']:g}) is shown only when it picks a different candidate than aggregate "
            f"on at least one of the sweep's (task, N) choices")
    if an["show_lcb"]:
        report.text(f"{rule}: it did on {an['lcb_differing']} of {an['lcb_choices']} (sigma median "
                    f"{an['sigma_median']:.3g}, max {an['sigma_max']:.3g}).", note=True)
    else:
        report.text(f"{rule}. Here it chose exactly as aggregate on all {an['lcb_choices']} choices (the reward's "
                    f"sigma: median {an['sigma_median']:.2g}, max {an['sigma_max']:.2g}, against mu differences of "
                    f"order 1), so sigma carries no information and the lcb rows, which would lie on top of "
                    f"aggregate's, are left out.", note=True)
    agree = doc.get("pairwise_agreement")
    if doc["noise_level"] == 0:
        text = (f"Sampling. The candidates are ODE edits (noise 0, {doc['steps']} steps), as the GRPO stage and the "
                f"held-out evaluation edit; the N candidates of a task differ only in their initial noise.")
    else:
        grpo_vq = _grpo_step0_vq(out)
        text = (f"Sampling. The candidates are SDE samples at noise level {doc['noise_level']:g} in each of the "
                f"{doc['steps']} steps. The GRPO stage's held-out evaluation instead uses deterministic ODE edits "
                f"(noise 0), so its oracle VQ" + (f" ({grpo_vq:.2f} before training)" if grpo_vq is not None else "")
                + f" is higher than here (random pick {an['curves']['random']['visual_quality'][0]:.2f}): the "
                f"sampling noise leaves grain in every candidate that the oracle's visual quality penalises.")
    report.text(f"{text} Within-task reward/oracle pairwise agreement of the candidates: "
                f"{'n/a' if agree is None else format(agree, '.3f')}.", note=True)


def _sampling(doc: dict) -> str:
    """How a sweep's candidates were sampled, in words."""
    if doc["noise_level"] == 0:
        return "ODE candidates differing in their initial noise"
    return f"SDE noise level {doc['noise_level']:g} at every step"


def _grpo_step0_vq(out: Path) -> float | None:
    path = out / "grpo" / "metrics.jsonl"
    if not path.is_file():
        return None
    from editrl.metrics import read_metrics

    rows = [r for r in read_metrics(path) if r.get("step") == 0 and "eval/oracle_visual_quality" in r]
    return float(rows[0]["eval/oracle_visual_quality"]) if rows else None


def section_grpo(out: Path, report: HtmlReport, meta: dict, verdicts: list) -> None:
    from editrl.metrics import read_metrics

    run_dir = out / "grpo"
    sizes = meta["sizes"]
    rows = read_metrics(run_dir / "metrics.jsonl")
    an = grpo_analysis(run_dir)
    doc = an["doc"]
    verdicts.extend(("grpo", an["estimates"][x]) for x in ("mean", *_dims()))  # a gain in one may cost the other
    report.heading("5. GRPO: a short RL run of the editor against the reward")
    report.text(f"{sizes['grpo_steps']} GRPO steps ({sizes['grpo_prompts']} prompts x {sizes['grpo_group']} samples "
                f"each) of a LoRA on the editor with the DiffusionNFT update and a KL guard to the starting editor, rewarded "
                f"by the reward model (configs/policy/editworld-nft-kl.yaml, the learned-reward recipe, shrunk; one "
                f"training seed). Afterwards the final policy and the editor it started from (adapter "
                f"off) edited the same {doc['tasks']} held-out tasks with the same initial noise (ODE, "
                f"{doc['ode_steps']} steps), so the gain is paired per task. A demonstration of the loop, not the "
                f"project's RL measurement (several seeds, 512 tasks: configs/policy/README.md): the interval reflects "
                f"which tasks were drawn, not training randomness (one seed).")
    for x in ("mean", *_dims()):
        report.verdict(an["estimates"][x])
    report.table(["held-out oracle (1-4)", "starting editor", "final policy", "gain [95%]"],
                 [[_SHORT[x], an["before"][x], an["after"][x], an["estimates"][x].interval()] for x in an["before"]])
    evals = [r for r in rows if "eval/oracle_instruction_following" in r]
    keys = ("eval/reward", "eval/oracle_instruction_following", "eval/oracle_visual_quality")
    if evals:
        report.text(f"The run's own periodic evaluation ({sizes['grpo_eval_tasks']} held-out tasks; the learned "
                    f"reward on the reward's logit-like scale, the oracle on 1-4):")
        report.table(["held-out evaluation", "learned reward", "oracle IF", "oracle VQ"],
                     [[f"step {r.get('step', '?')}", *[r.get(k, "-") for k in keys]] for r in evals])
    report.image(run_dir / "curves.png", "left: the learned reward (its own scale); right: held-out oracle scores "
                                         "(1-4), against step. A rising reward with a flat oracle is reward hacking "
                                         "or noise.")
    tiles = run_dir / "held_out"
    grid = []
    for i in range(min(sizes["grid_rows"], doc["tasks"])):
        files = [tiles / f"{i:02d}_{n}.png" for n in ("source", "before", "after", "target")]
        if not all(f.is_file() for f in files):
            break
        grid.append([doc["instructions"][i], *[f.read_bytes() for f in files],
                     " / ".join(f"{doc['before'][d][i]:.2f}" for d in _dims()),
                     " / ".join(f"{doc['after'][d][i]:.2f}" for d in _dims())])
    if grid:
        report.text(f"Held-out edits ({doc['image_size']} px images shown at 128 px or more, nearest neighbour):")
        report.table(["instruction", "source", "starting editor", "final policy", "target",
                      "oracle before (IF / VQ)", "oracle after (IF / VQ)"], grid)


def _mu_range(out: Path) -> str:
    """" (from LO to HI in this run)" over the curation stage's per-dimension mu, or "" without that stage."""
    path = out / "curate" / "all_scored.jsonl"
    if not path.is_file():
        return ""
    from editrl.io import iter_jsonl

    mus = [float(v) for _, row in iter_jsonl(path) for v in row["reward"]["mu"].values()]
    return f" (from {min(mus):+.1f} to {max(mus):+.1f} on the curated rows of this run)" if mus else ""


def section_provenance(out: Path, report: HtmlReport, meta: dict) -> None:
    prov = meta["provenance"]
    report.heading("Provenance")
    report.text("What produced this report, so that it can be reproduced: the demo's own command, then every command "
                "its stages ran (the demo calls the CLI in-process; lines marked in-process are the equivalent CLI "
                "command or the function it called).")
    report.code("\n".join([f"$ {prov['command']}", *[f"[{s}] {c}" for s, c in meta["commands"]]]))
    hashes = meta.get("config_sha256", {})  # taken when the demo ran, so a later edit cannot pass for what ran
    report.table(["config file", "sha256 (first 16 hex)"],
                 [[_rel(p), hashes.get(p) or file_sha256(p)] for p in meta["configs"]])
    report.table(["seed", "value"], [[k, v] for k, v in meta["seeds"].items()])
    report.table(["", "version / value"], [
        ["git commit", prov["git_commit"]], ["date (UTC)", prov["date"]], ["python", prov["python"]],
        ["platform", prov["platform"]], *[[f"package {k}", v] for k, v in prov["packages"].items()]])


SECTIONS = {"world": section_world, "reward": section_reward, "curate": section_curate,
            "best-of-n": section_best_of_n, "grpo": section_grpo}


def render(out: str | Path) -> Path:
    """(Re)write ``out/report.html`` from the stage outputs and ``out/demo.json`` alone."""
    out = Path(out)
    meta = _json(out / "demo.json")
    timings = meta["timings"]
    verdicts: list[tuple[str, Estimate]] = []
    body = HtmlReport("")
    for stage in STAGES:
        if stage not in meta["ran"]:
            continue
        fn = SECTIONS[stage]
        fn(out, body, meta) if stage == "world" else fn(out, body, meta, verdicts)
        wall = f"{stage} stage wall time: {timings[stage]:.1f} s" if stage in timings else ""
        if stage == "reward" and meta.get("trained_s"):
            wall += f" (of which {meta['trained_s']:.1f} s brief training)"
        body.text(wall, note=True)

    report = HtmlReport("editrl demo: the embedded default, end to end")
    report.text("This report walks through the whole pipeline on the editworld, a toy editing world where every "
                "edit has an exact true score: generate data, check the reward model, use it to curate data, to "
                "pick the best of N samples, and as the reward of a short RL (GRPO) run. Every stage ran the same "
                "command a user would run (listed under Provenance); its outputs are in the stage's folder beside "
                "this report."
                + (" QUICK MODE: every stage is shrunk to a smoke test; the numbers mean nothing." if meta["quick"] else ""))
    report.text(f"Models. Editor: {meta['editor_text']}. Reward model: {meta['reward_text']}.", note=True)
    report.text(UNITS.format(range=_mu_range(out)))
    if verdicts:
        report.text("Verdicts at a glance. Each is a 95% interval; 'not significant' means the interval includes "
                    "the no-effect value (0 for a gain, 0.5 for an accuracy), i.e. the data cannot tell the effect "
                    "from noise.")
        report.table(["stage", "measure", "estimate [95% interval]", "verdict"],
                     [[s, e.label, e.interval(), e.words()] for s, e in verdicts])
    report._parts.extend(body._parts)
    report.heading("Timings")
    skipped = sorted(set(STAGES) - set(meta["ran"]))
    report.text("Wall time of each stage in seconds (the reward stage includes the brief reward training when the "
                "demo had to train one)." + (f" Skipped: {', '.join(skipped)}." if skipped else ""))
    report.table(["stage", "seconds"], [[k, v] for k, v in timings.items()], precision=1)
    section_provenance(out, report, meta)
    return report.write(out / "report.html")


# ---------------------------------------------------------------------------------------------- driver
def _parse_skip(text: str | None) -> set[str]:
    from editrl.config import ConfigError

    skip = {s.strip().lower() for s in (text or "").split(",") if s.strip()}
    unknown = skip - set(STAGES)
    if unknown:
        raise ConfigError(f"--skip: unknown stage(s) {sorted(unknown)}; stages are {', '.join(STAGES)}")
    return skip


def _demo_command(args: argparse.Namespace) -> str:
    """The ``editrl demo`` command line these arguments stand for."""
    import shlex

    argv = ["demo", "--out", str(args.out), "--seed", str(args.seed)]
    for flag, value in (("--groups", getattr(args, "groups", None)), ("--reward", getattr(args, "reward", None)),
                        ("--skip", getattr(args, "skip", None))):
        if value:
            argv += [flag, str(value)]
    if getattr(args, "quick", False):
        argv.append("--quick")
    return "editrl " + shlex.join(argv)


def provenance(args: argparse.Namespace) -> dict[str, Any]:
    return {"command": _demo_command(args), "git_commit": git_commit(ROOT),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            "python": platform.python_version(), "platform": platform.platform(),
            "packages": package_versions(PACKAGES)}


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quick = getattr(args, "quick", False)
    sizes = Sizes(**{**QUICK.__dict__}) if quick else Sizes()
    if getattr(args, "groups", None):
        sizes.groups = args.groups
    seed = args.seed
    skip = _parse_skip(getattr(args, "skip", None))
    record = Record()
    prov = provenance(args)
    timings: dict[str, float] = {}
    ran: list[str] = []
    t_all = time.perf_counter()

    t = time.perf_counter()
    if "world" in skip:
        data = out / "world"
        if not (data / "manifest.jsonl").is_file():
            from editrl.config import ConfigError

            raise ConfigError(f"--skip world needs an existing world in {data}")
    else:
        data = stage_world(out, sizes.groups, seed, record)
        timings["world"] = time.perf_counter() - t
        ran.append("world")

    editor, editor_text = pick_editor(out, seed)
    t = time.perf_counter()
    trained_s = 0.0
    if args.reward:
        checkpoint, reward_text = Path(args.reward), f"the checkpoint given with --reward ({args.reward})"
    elif has_weights(SHIPPED_REWARD):
        checkpoint, reward_text = SHIPPED_REWARD, f"the shipped tiny reward model ({_rel(SHIPPED_REWARD)})"
    else:
        checkpoint, reward_text = train_reward(out, data, sizes, seed, record)
        trained_s = time.perf_counter() - t
    record.config(*sorted(p for p in Path(checkpoint).glob("*") if p.suffix in (".yaml", ".json", ".safetensors")))

    if "reward" not in skip:
        stage_reward(out, data, checkpoint, record, max_items=40 if quick else None)
        timings["reward"] = time.perf_counter() - t
        ran.append("reward")
    elif trained_s:
        timings["reward"] = trained_s
    for name, fn in (("curate", lambda: stage_curate(out, data, checkpoint, sizes.curate_rows, record)),
                     ("best-of-n", lambda: stage_best_of_n(out, editor, checkpoint, sizes, seed, record)),
                     ("grpo", lambda: stage_grpo(out, editor, checkpoint, sizes, seed, record))):
        if name in skip:
            continue
        t = time.perf_counter()
        fn()
        timings[name] = time.perf_counter() - t
        ran.append(name)
    timings["total"] = time.perf_counter() - t_all

    from editworld.tasks import HELD_OUT_SEED

    record.seeds = {"--seed (world, reward training, sampling, GRPO, re-evaluation noise)": seed,
                    "held-out task seed (editworld.tasks.HELD_OUT_SEED)": HELD_OUT_SEED,
                    "bootstrap resampling seed": 0}
    meta = {"quick": quick, "seed": seed, "sizes": asdict(sizes), "ran": ran, "editor": editor,
            "editor_text": editor_text, "reward": str(checkpoint), "reward_text": reward_text, "trained_s": trained_s,
            "timings": timings, "provenance": prov, **asdict(record),
            "config_sha256": {p: file_sha256(p) for p in record.configs}}
    (out / "demo.json").write_text(json.dumps(meta, indent=1) + "\n")
    (out / "timings.json").write_text(json.dumps(timings, indent=1))
    path = render(out)
    print(f"report: {path}  ({timings['total']:.0f} s)")
    return 0
