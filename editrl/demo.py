"""`editrl demo`: the whole story on the embedded default, in one command and one HTML report.

Stages, each through the same public functions (mostly the very CLI commands) a user calls:
  WORLD      ``editrl world generate`` + ``check``: an editworld dataset with exact ground truth
  REWARD     ``editrl reward eval``: pairwise accuracy of the reward model on the held-out bench split beside
             baselines. The reward is ``--reward CKPT``, else the shipped ``reward/weights/editworld-tiny`` if it
             holds weights, else one the demo trains briefly itself with ``editrl reward train`` on the world it
             generated -- the report says which.
  CURATE     ``editrl curate --top-fraction 0.5`` on some training rows: does the reward keep the better edits?
  BEST-OF-N  ``editrl best-of-n --sweep``: oracle score of the reward's pick among N samples, N = 1, 2, 4, 8
  GRPO       ``editrl policy grpo`` (configs/policy/editworld-grpo.yaml, shrunk): a few RL steps of the tiny
             editor against the reward; learned-reward and held-out oracle curves
The editor is the shipped ``rollout/weights/editworld-tiny`` when present, else a fresh (random) tiny editor.
Each stage writes into ``out/<stage>/``; the report is ``out/report.html``, stage wall times ``out/timings.json``.
``--quick`` shrinks every stage to a smoke test (tests/editrl/test_demo.py); ``--skip curate,grpo`` skips stages.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from editrl.report import HtmlReport

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_REWARD = ROOT / "reward" / "weights" / "editworld-tiny"
REWARD_PRESET = ROOT / "configs" / "reward" / "editworld-tiny.yaml"
GRPO_PRESET = ROOT / "configs" / "policy" / "editworld-grpo.yaml"
STAGES = ("world", "reward", "curate", "best-of-n", "grpo")


@dataclass
class Sizes:
    """How big each stage is; ``QUICK`` is the smoke-test size."""

    groups: int = 300
    reward_steps: int = 300  # a brief reward training run when no trained reward model is available
    reward_minutes: float = 4.0  # its time budget
    curate_rows: int = 256
    bon_tasks: int = 12
    bon_ns: str = "1,2,4,8"
    bon_steps: int = 10
    grpo_steps: int = 8
    grpo_prompts: int = 4
    grpo_group: int = 8
    grpo_sde_steps: int = 8
    grpo_eval_every: int = 4
    grpo_eval_tasks: int = 24


QUICK = Sizes(groups=12, reward_steps=4, reward_minutes=1.0, curate_rows=24, bon_tasks=2, bon_ns="1,2", bon_steps=3,
              grpo_steps=1, grpo_prompts=2, grpo_group=2, grpo_sde_steps=3, grpo_eval_every=0, grpo_eval_tasks=2)


def _cli(argv: list[str]) -> None:
    from editrl.cli import main

    code = main(argv)
    if code:
        raise RuntimeError(f"editrl {' '.join(argv)} exited with {code}")


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    return path


def has_weights(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.safetensors"))


# ---------------------------------------------------------------------------------------------- models
def pick_editor(out: Path, seed: int) -> tuple[str, str]:
    """(editor spec, how it is described in the report)."""
    from rollout.registry import shipped_tiny_dir

    shipped = shipped_tiny_dir()
    if (shipped / "editor_config.json").is_file():
        return "editworld-tiny", f"the shipped tiny editor ({shipped.relative_to(ROOT)})"
    from rollout.tiny_editor import TinyEditor

    folder = out / "editor-fresh"
    TinyEditor.from_config(seed=seed).save_pretrained(folder)
    return str(folder), ("a FRESH, UNTRAINED tiny editor (random weights; no shipped editor was found at "
                         f"{shipped.relative_to(ROOT)}), so its edits are noise")


def train_reward(out: Path, data: Path, sizes: Sizes, seed: int) -> tuple[Path, str]:
    """Train a tiny reward model briefly with ``editrl reward train``'s functions; (checkpoint, description)."""
    from editrl.config import load_config
    from reward.train.config import RewardTrainConfig
    from reward.train.trainer import train as run_training

    run_dir = _fresh(out / "reward-train")
    cfg = load_config(RewardTrainConfig, str(REWARD_PRESET), [
        f"data.train={data}", "data.extra_train=[]", f"out_dir={run_dir}", f"train.max_steps={sizes.reward_steps}",
        f"train.time_budget_minutes={sizes.reward_minutes}", f"train.eval_every={max(1, sizes.reward_steps // 3)}",
        "train.save_every=0", f"train.seed={seed}", "data.max_val_pairs=256"])
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


# ---------------------------------------------------------------------------------------------- stages
def stage_world(out: Path, groups: int, seed: int, report: HtmlReport) -> Path:
    from editworld.check import check_dataset
    from editworld.config import WorldConfig
    from editworld.dataset import generate

    data = _fresh(out / "world")
    summary = generate(data, WorldConfig(groups=groups, seed=seed))
    check = check_dataset(data)
    report.heading("1. The editworld")
    report.text("A procedural editing world with exact ground truth: scenes of coloured shapes, instructions "
                "from a grammar, seven candidate edits per instruction from simulated editors with known failure "
                "modes, simulated annotators, and a pixel-level oracle that scores any image. Read the table as: "
                "how much data there is, and how well the oracle and the (noisy) annotators agree with the truth.")
    report.table(["measure", "value"], [
        ["groups / candidates", f"{summary['groups']} / {summary['candidates']}"],
        ["training pairs (ties, disentangle-able ties)",
         f"{summary['train_pairs']} ({summary['tie_pairs']}, {summary['disentangle_pairs']})"],
        *[[f"oracle vs true Spearman, {d}", v] for d, v in check["oracle_spearman"].items()],
        *[[f"annotator agreement (exact), {d}", v["exact"]] for d, v in check["annotator_agreement"].items()],
    ])
    report.image(data / "check_histograms.png", "oracle scores by true score")
    return data


def stage_reward(out: Path, data: Path, checkpoint: Path, reward_text: str, report: HtmlReport,
                 max_items: int | None) -> dict:
    from reward.eval.editworld_bench import run_editworld_eval

    results = run_editworld_eval(checkpoint, data, out_dir=_fresh(out / "reward"), max_items=max_items,
                                 progress=False)
    report.heading("2. The reward model (EditReward, tiny Qwen2.5-VL)")
    report.text(f"The reward model used by every later stage: {reward_text}.", note=False)
    report.text("Pairwise accuracy on the benchmark split (three annotators; tied human pairs excluded), "
                "for the reward model and baselines. The bench split is never trained on. 0.5 is chance; a useful "
                "reward must beat the pixel-difference heuristic.")
    report.table(["method", "pairwise accuracy", "pairs"],
                 [[name, r["pairwise_accuracy"], r["pairs"]] for name, r in results.items()])
    curve = checkpoint.parent / "training_curve.png"
    if "BRIEFLY" in reward_text and curve.is_file():
        report.image(curve, "the demo's brief reward training run")
    return results


def stage_curate(out: Path, data: Path, checkpoint: Path, rows: int, report: HtmlReport) -> dict:
    """``editrl curate --top-fraction 0.5`` on the first ``rows`` training candidates of the world."""
    manifest = data / "curate_input.jsonl"  # beside manifest.jsonl so its relative image paths stay valid
    lines = [ln for ln in (data / "manifest.jsonl").read_text().splitlines() if '"split": "train"' in ln][:rows]
    manifest.write_text("\n".join(lines) + "\n")
    cur = _fresh(out / "curate")
    _cli(["curate", "--input", str(manifest), "--reward", str(checkpoint), "--out", str(cur),
          "--top-fraction", "0.5", "--no-progress"])
    summary = json.loads((cur / "summary.json").read_text())
    groups: dict[str, list[dict]] = {"kept": [], "dropped": []}
    with (cur / "all_scored.jsonl").open() as f:
        for line in f:
            row = json.loads(line)
            groups["kept" if row.get("kept") else "dropped"].append(row)

    def means(rs: list[dict]) -> list[Any]:
        if not rs:
            return [0, "-", "-", "-"]
        ifs = [r["true_scores"]["instruction_following"] for r in rs]
        vqs = [r["true_scores"]["visual_quality"] for r in rs]
        return [len(rs), sum(ifs) / len(rs), sum(vqs) / len(rs), (sum(ifs) + sum(vqs)) / (2 * len(rs))]

    report.heading("3. Curation: keep the top half of a dataset by reward")
    report.text(f"`editrl curate` scored {summary['scored']} training candidates of the world with the reward model "
                f"and kept the best half. Each row has an exact true score (1-4), so we can check the claim: if the "
                f"reward is useful, the kept rows' true scores are higher than the dropped rows'.")
    report.table(["measure", "value"], [[k, summary[k]] for k in ("total", "scored", "rejected", "kept")])
    report.table(["rows", "n", "true IF (mean)", "true VQ (mean)", "true mean"],
                 [["kept", *means(groups["kept"])], ["dropped", *means(groups["dropped"])],
                  ["all", *means(groups["kept"] + groups["dropped"])]])
    report.image(cur / "histograms.png", "reward mu per dimension and the ranking key; kept rows in blue, cut dashed")
    report.image(cur / "extremes.png", "lowest- and highest-ranked rows: source, edited, instruction")
    return summary


def stage_best_of_n(out: Path, editor: str, checkpoint: Path, sizes: Sizes, seed: int, report: HtmlReport) -> dict:
    bon = _fresh(out / "best-of-n")
    _cli(["best-of-n", "--sweep", "--editor", editor, "--reward", str(checkpoint), "--out", str(bon),
          "--tasks", str(sizes.bon_tasks), "--ns", sizes.bon_ns, "--steps", str(sizes.bon_steps),
          "--seed", str(seed), "--no-progress"])
    doc = json.loads((bon / "sweep.json").read_text())
    from rollout.best_of_n_commands import METHOD_LABELS

    rows = [[int(n), METHOD_LABELS.get(m, m), v["instruction_following"], v["visual_quality"], v["mean"], v["se"]]
            for n, methods in doc["results"].items() for m, v in methods.items()]
    report.heading("4. Best-of-N: sample N edits, let the reward pick one")
    report.text(f"For {doc['num_tasks']} held-out tasks the editor samples N edits; the reward model picks one and "
                f"the oracle scores the pick (1-4). If the reward helps, the reward's lines rise with N above "
                f"'random choice'; 'oracle best' is the ceiling. Within-task reward/oracle pairwise agreement: "
                f"{'n/a' if doc['pairwise_agreement'] is None else format(doc['pairwise_agreement'], '.3f')}.")
    report.table(["N", "method", "oracle IF", "oracle VQ", "mean", "+- se"], rows)
    report.image(bon / "sweep.png", "oracle score of the chosen edit against N")
    return doc


def stage_grpo(out: Path, editor: str, checkpoint: Path, sizes: Sizes, seed: int, report: HtmlReport) -> dict:
    from editrl.metrics import read_metrics

    run_dir = _fresh(out / "grpo")
    _cli(["policy", "grpo", "--config", str(GRPO_PRESET), f"out={run_dir}", f"seed={seed}",
          f"steps={sizes.grpo_steps}", f"checkpoint_every={sizes.grpo_steps}", "resume=false",
          f"editor.spec={editor}", f"reward.client={checkpoint}", f"data.prompts_per_step={sizes.grpo_prompts}",
          f"sampling.group_size={sizes.grpo_group}", f"sampling.num_steps={sizes.grpo_sde_steps}",
          f"eval.every={sizes.grpo_eval_every}", f"eval.num_tasks={sizes.grpo_eval_tasks}",
          f"eval.num_steps={sizes.grpo_sde_steps}"])
    rows = read_metrics(run_dir / "metrics.jsonl")
    evals = [r for r in rows if "eval/oracle_instruction_following" in r]
    keys = ("eval/reward", "eval/oracle_instruction_following", "eval/oracle_visual_quality")
    report.heading("5. GRPO: a short RL run of the editor against the reward")
    report.text(f"{sizes.grpo_steps} GRPO steps ({sizes.grpo_prompts} prompts x {sizes.grpo_group} samples each) "
                f"of a LoRA on the editor, rewarded by the reward model (configs/policy/editworld-grpo.yaml, shrunk). "
                f"Left: the learned reward, which training pushes up; right: the held-out oracle score, the ground "
                f"truth. A rising reward with a flat oracle is reward hacking or noise; this run is far too short "
                f"to show a real gain.")
    if evals:
        report.table(["held-out evaluation", *[k.split("/", 1)[1] for k in keys]],
                     [[f"step {r.get('step', '?')}", *[r.get(k, "-") for k in keys]] for r in evals])
    report.image(run_dir / "curves.png", "learned reward and oracle scores against step")
    grids = sorted((run_dir / "eval").glob("*.png")) if (run_dir / "eval").is_dir() else []
    if grids:
        report.image(grids[-1], f"held-out edits after training ({grids[-1].stem}): source | edit | target")
    return {"steps": len(rows), "last": rows[-1] if rows else {}}


# ---------------------------------------------------------------------------------------------- driver
def _parse_skip(text: str | None) -> set[str]:
    from editrl.config import ConfigError

    skip = {s.strip().lower() for s in (text or "").split(",") if s.strip()}
    unknown = skip - set(STAGES)
    if unknown:
        raise ConfigError(f"--skip: unknown stage(s) {sorted(unknown)}; stages are {', '.join(STAGES)}")
    return skip


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quick = getattr(args, "quick", False)
    sizes = Sizes(**{**QUICK.__dict__}) if quick else Sizes()
    if getattr(args, "groups", None):
        sizes.groups = args.groups
    seed = args.seed
    skip = _parse_skip(getattr(args, "skip", None))
    report = HtmlReport("editrl demo: the embedded default, end to end")
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    report.text("This report walks through the whole pipeline on the editworld, a toy editing world where every "
                "edit has an exact true score: generate data, check the reward model, use it to curate data, to "
                "pick the best of N samples, and as the reward of a short RL (GRPO) run. Every stage ran the same "
                "command a user would run; its outputs are in the stage's folder beside this report."
                + (" QUICK MODE: every stage is shrunk to a smoke test; the numbers mean nothing." if quick else ""))

    t = time.perf_counter()
    if "world" in skip:
        data = out / "world"
        if not (data / "manifest.jsonl").is_file():
            from editrl.config import ConfigError

            raise ConfigError(f"--skip world needs an existing world in {data}")
    else:
        data = stage_world(out, sizes.groups, seed, report)
        timings["world"] = time.perf_counter() - t
        report.text(f"world stage wall time: {timings['world']:.1f} s", note=True)

    editor, editor_text = pick_editor(out, seed)
    t = time.perf_counter()
    trained_s = 0.0
    if args.reward:
        checkpoint, reward_text = Path(args.reward), f"the checkpoint given with --reward ({args.reward})"
    elif has_weights(SHIPPED_REWARD):
        checkpoint, reward_text = SHIPPED_REWARD, f"the shipped tiny reward model ({SHIPPED_REWARD.relative_to(ROOT)})"
    else:
        checkpoint, reward_text = train_reward(out, data, sizes, seed)
        trained_s = time.perf_counter() - t
    report.text(f"Models. Editor: {editor_text}. Reward model: {reward_text}.", note=True)

    if "reward" not in skip:
        stage_reward(out, data, checkpoint, reward_text, report, max_items=40 if quick else None)
        timings["reward"] = time.perf_counter() - t
        report.text(f"reward stage wall time: {timings['reward']:.1f} s"
                    + (f" (of which {trained_s:.1f} s brief training)" if trained_s else ""), note=True)
    elif trained_s:
        timings["reward"] = trained_s
    for name, fn in (("curate", lambda: stage_curate(out, data, checkpoint, sizes.curate_rows, report)),
                     ("best-of-n", lambda: stage_best_of_n(out, editor, checkpoint, sizes, seed, report)),
                     ("grpo", lambda: stage_grpo(out, editor, checkpoint, sizes, seed, report))):
        if name in skip:
            continue
        t = time.perf_counter()
        fn()
        timings[name] = time.perf_counter() - t
        report.text(f"{name} stage wall time: {timings[name]:.1f} s", note=True)
    timings["total"] = time.perf_counter() - t_all

    report.heading("Timings")
    report.text("Wall time of each stage in seconds (the reward stage includes the brief reward training when the "
                "demo had to train one)." + (f" Skipped: {', '.join(sorted(skip))}." if skip else ""))
    report.table(["stage", "seconds"], [[k, v] for k, v in timings.items()], precision=1)
    path = report.write(out / "report.html")
    (out / "timings.json").write_text(json.dumps(timings, indent=1))
    print(f"report: {path}  ({timings['total']:.0f} s)")
    return 0
