"""``editrl``: the one command-line entry point and the only argument parser of the project.

Each subcommand names the function that runs it as ``"module:function"``; the module is imported only
when that subcommand runs, so ``editrl --help`` stays fast and light. Handlers take the parsed
``argparse.Namespace`` and return an exit code (or None for 0).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable, Sequence

TORCH_FREE = ("editworld.",)  # command modules that run no torch: no thread default to set


def _handler(target: str) -> Callable[[argparse.Namespace], int | None]:
    module, func = target.split(":")

    def run(args: argparse.Namespace) -> int | None:
        if not module.startswith(TORCH_FREE):
            from editrl.threads import apply_default_threads

            apply_default_threads()  # torch threads: the cores not busy now (editrl/threads.py)
        return getattr(importlib.import_module(module), func)(args)

    return run


def _command(sub: argparse._SubParsersAction, name: str, target: str, help: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help)
    p.set_defaults(func=_handler(target))
    return p


def _config_args(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument("--config", default=default, help="YAML preset (see configs/)" + (f"; default {default}" if default else ""))
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="dotted overrides of config fields")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="editrl", description="Post-train image editors with a learned, human-aligned reward model.")
    top = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # ---- world: the editworld, a procedural editing world with exact ground truth -------------------
    world = top.add_parser("world", help="generate and inspect editworld datasets").add_subparsers(dest="world_command", required=True)
    p = _command(world, "generate", "editworld.commands:generate", "write an editworld dataset (images + manifests)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--groups", type=int, default=None, help="number of (source, instruction) groups of 7 candidates (default 200)")
    p.add_argument("--seed", type=int, default=None, help="seed (default 0); same seed, byte-identical manifests")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (default 32)")
    p.add_argument("--bench-fraction", type=float, default=None, help="share of groups in the 3-annotator benchmark split (default 0.2)")
    _config_args(p)
    p = _command(world, "check", "editworld.commands:check", "print a dataset's statistics and the oracle's agreement with the truth")
    p.add_argument("dataset", help="dataset folder written by `editrl world generate`")
    p = _command(world, "editor-samples", "rollout.commands:editor_samples",
                 "preference pairs from an editor's own samples, labelled by the oracle through a simulated annotator")
    p.add_argument("--editor", action="append", default=None,
                   help="editor spec, local folder or RL run (rl:DIR); repeat it to put several editors' samples of "
                        "each task in one group (default: the shipped tiny editor)")
    p.add_argument("--out", required=True, help="output folder (editworld layout: images/, manifest.jsonl, pairs.jsonl)")
    _config_args(p)
    p = _command(world, "bench", "editworld.commands:bench", "time the generation of N groups (prints groups/s)")
    p.add_argument("--groups", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2, help="worker processes (1 = in-process)")
    p.add_argument("--out", default=None, help="folder to write to (default: a temporary folder)")

    # ---- reward ----
    reward = top.add_parser("reward", help="train, score and evaluate the EditReward model").add_subparsers(dest="reward_command", required=True)
    p = _command(reward, "score", "reward.serve.commands:score", "score edited images of one source and instruction (per-dimension mu, sigma, aggregate)")
    p.add_argument("--checkpoint", required=True, help="reward checkpoint folder (e.g. reward/weights/editworld-tiny)")
    p.add_argument("--source", required=True, help="source image")
    p.add_argument("--instruction", required=True, help="edit instruction")
    p.add_argument("--edited", required=True, nargs="+", help="edited image(s), scored as one group with a shared prefix")
    p.add_argument("--device", default=None, help="torch device (default: where the checkpoint loads, CPU)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", action="store_true", help="print per-edit mu, sigma, score, score_sigma as JSON (for scripts)")
    p = _command(reward, "import-official", "reward.official.importer:run",
                 "convert a released EditReward checkpoint (model.safetensors / model.pth) + its base model folder "
                 "into an editrl reward checkpoint that scores exactly like the official code")
    p.add_argument("--checkpoint", required=True, help="folder with model.safetensors or model.pth (or the file itself)")
    p.add_argument("--base", required=True, help="local folder of the base model (Qwen2.5-VL-7B-Instruct or "
                                                 "MiMo-VL-7B-SFT-2508): architecture, tokenizer, chat template")
    p.add_argument("--out", required=True, help="new editrl reward checkpoint folder")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="compute dtype written to the config (default: the checkpoint's backbone dtype)")
    p = _command(reward, "train", "reward.train.commands:train", "train a reward model on preference pairs (config + overrides)")
    _config_args(p, default="configs/reward/editworld-tiny.yaml")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p = _command(reward, "pretrain", "reward.train.commands:pretrain",
                 "scene-grounded pretraining of the tiny backbone (stage 0; its final/ becomes model.backbone)")
    _config_args(p, default="configs/reward/editworld-tiny-pretrain.yaml")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p = _command(reward, "eval", "reward.eval.commands:evaluate",
                 "Table 2: checkpoints and baselines on editworld / GenAI / AURORA / ImagenHub / EditReward-Bench")
    p.add_argument("--checkpoint", action="append", default=None, help="reward checkpoint folder, or ensemble:A,B,... scored as its members' mean (repeatable)")
    p.add_argument("--data", default=None, help="editworld dataset folder whose bench split is scored")
    p.add_argument("--bench", action="append", default=None, metavar="NAME=PATH",
                   help="external benchmark (repeatable): genai=, aurora=, aurora_pointwise=, imagenhub=, editreward= "
                        "a file or folder (editreward: the local JSON files or the hub's per-comparison rows)")
    p.add_argument("--image-root", default=None, help="folder the --bench image paths are relative to")
    p.add_argument("--baselines", default="random,pixel,untrained", help="comma list of random, pixel, untrained ('none')")
    p.add_argument("--from-scores", default=None, metavar="DIR", help="recompute both tables from DIR/scores (no model)")
    p.add_argument("--protocol", default="both", choices=["both", "editrl", "official"],
                   help="tables to print: editrl's metrics, the official eval_bench.py protocol of the same scores, "
                        "or both (table2.json always holds both)")
    p.add_argument("--out", default=None, help="output folder: scores/, table2.json, table2.png (default: CHECKPOINT/eval)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-items", type=int, default=None, help="score only about this many items per benchmark")
    p.add_argument("--no-baselines", action="store_true", help="skip the baselines (same as --baselines none)")
    p = _command(reward, "ablate", "reward.eval.commands:ablate",
                 "Tables 4 and 7: train reward variants on one budget, compare them on the editworld bench (resumable)")
    _config_args(p, default="configs/reward/ablate-editworld.yaml")
    p.add_argument("--out", default=None, help="output folder: one per variant, ablate.json, ablate.png; rerun to resume")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    # reward serving (reward/serve/commands.py)
    p = _command(reward, "serve", "reward.serve.commands:serve", "serve a reward checkpoint from a pool of Ray actors (dynamic batching)")
    p.add_argument("--checkpoint", required=True, help="reward checkpoint folder loaded by every replica")
    p.add_argument("--replicas", type=int, default=1, help="number of scorer actors")
    p.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per replica (fractional shares a GPU, e.g. 0.5)")
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per replica")
    p.add_argument("--placement", default="PACK", choices=["STRICT_PACK", "PACK", "SPREAD", "STRICT_SPREAD"], help="placement group strategy")
    p.add_argument("--address", default=None, help="existing Ray cluster (default: start a local one on 127.0.0.1)")
    p.add_argument("--name", default="editrl-reward", help="actor name clients connect to (ray://NAME)")
    p.add_argument("--detached", action="store_true", help="keep serving after this command exits (needs --address)")
    p.add_argument("--device", default=None, help="torch device of each replica (default: cuda if --num-gpus > 0)")
    p.add_argument("--max-batch-edits", type=int, default=32, help="most edits in one replica call")
    p.add_argument("--max-batch-tokens", type=int, default=32768, help="most estimated tokens in one replica call")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a non-full batch waits for more requests")
    p.add_argument("--max-queue-edits", type=int, default=1024, help="queue bound; callers block beyond it")
    p.add_argument("--metrics-dir", default=None, help="write reward_service_metrics.jsonl here")
    p.add_argument("--metrics-interval", type=float, default=10.0, help="seconds between metrics rows / status lines")
    p = _command(reward, "bench", "reward.serve.commands:bench", "official-style vs one-pass vs shared-prefix reward inference, edits/s side by side")
    p.add_argument("--checkpoint", default=None, help="reward checkpoint (default: the tiny model with random weights)")
    p.add_argument("--items", type=int, default=64, help="edits scored by every style (multiple of 16)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--full-shapes", action="store_true", help="Qwen2.5-VL-7B-shaped backbone, random weights, 448x448, bf16 (GPU)")
    p.add_argument("--group-sizes", type=int, nargs="+", default=[4, 8, 16], help="G of the shared-prefix rows")
    p.add_argument("--batch-size", type=int, default=32, help="scorer batch size (batched and shared-prefix rows)")
    p.add_argument("--image-size", type=int, default=None, help="image side in pixels (default 64, or 448 with --full-shapes)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of every style after a warm-up (median and best reported)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the JSON result to this file")
    p.add_argument("--ray-replicas", type=int, default=0, help="also measure through a local Ray service with this many replicas")
    p.add_argument("--ray-callers", type=int, default=8, help="concurrent callers for the Ray service rows")

    # ---- policy ----
    policy = top.add_parser("policy", help="fine-tune editors: SFT, online GRPO and DPO").add_subparsers(dest="policy_command", required=True)
    # supervised fine-tuning and evaluation (policy/commands.py)
    p = _command(policy, "sft", "policy.commands:sft", "flow-matching SFT of an editor on (source, instruction, target) rows; resumable")
    _config_args(p, default="configs/policy/editworld-sft.yaml")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p = _command(policy, "eval", "policy.commands:evaluate", "mean oracle scores of an editor on held-out editworld tasks, beside no-op and target")
    p.add_argument("--editor", default="editworld-tiny", help="editor spec or local folder (default: the shipped tiny editor)")
    p.add_argument("--tasks", type=int, default=128, help="held-out tasks (editworld.tasks.HELD_OUT_SEED)")
    p.add_argument("--steps", type=int, default=10, help="ODE steps")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--size", type=int, default=32, help="editworld image size")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial noise")
    p.add_argument("--grid", default="runs/policy-eval/grid.png", help="PNG grid (source | instruction | edit | target)")
    p.add_argument("--grid-rows", type=int, default=16)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    # online RL (policy/rl_commands.py)
    p = _command(policy, "grpo", "policy.rl_commands:grpo", "online GRPO of an editor against the reward model; writes metrics, checkpoints, curves.png")
    _config_args(p, default="configs/policy/editworld-grpo.yaml")
    p = _command(policy, "dpo", "policy.rl_commands:dpo", "online DPO (best vs worst of reward-ranked groups) with a fixed or refreshed reference")
    _config_args(p, default="configs/policy/editworld-dpo.yaml")
    p = _command(policy, "margins", "policy.rl_commands:margins",
                 "held-out gain (last eval - step 0) of RL runs over seeds, with a Student-t confidence interval")
    p.add_argument("runs", nargs="+", help="run folders (each with metrics.jsonl), one per seed")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence level of the interval")
    p.add_argument("--out", default=None, help="write the table as JSON here")
    p.add_argument("--plot", default=None, help="write a PNG of the held-out curves of every run and their mean")
    p.add_argument("--tasks", type=int, default=0,
                   help="> 0: re-evaluate each run's final policy and its starting editor (adapter off) on this many "
                        "held-out tasks, paired (same tasks, same noise), instead of reading the runs' own evaluations")
    p.add_argument("--eval-seed", type=int, default=0, help="--tasks: seed of the initial noise")
    p.add_argument("--eval-steps", type=int, default=None, help="--tasks: ODE steps (default: each run's eval.num_steps)")
    p.add_argument("--threads", type=int, default=0, help="--tasks: torch CPU threads (0 = default)")
    p.add_argument("--checkpoint", default=None,
                   help="--tasks: evaluate this path inside each run instead of its newest checkpoint (guard-best: "
                        "the policy eval.guard_reward liked best; checkpoints/step_000024: one step)")

    # ---- curate ----
    p = _command(top, "curate", "curation.commands:curate",
                 "score an editing dataset with the reward model and keep the best (resumable); or --reproduce-table3")
    _config_args(p)
    p.add_argument("--input", default=None, help="dataset: manifest.jsonl or a folder (see --input-format)")
    p.add_argument("--input-format", default=None, choices=["editrl", "folder"],
                   help="editrl manifest (default) or an imagefolder-style metadata.jsonl (see curation/config.py)")
    p.add_argument("--reward", default=None, help="reward checkpoint folder, ray://NAME[@ADDRESS], or ensemble:SPEC1,SPEC2,... (the members' mixture)")
    p.add_argument("--out", default=None, help="output folder; rerun with the same folder to resume")
    p.add_argument("--restart", action="store_true", help="discard the scores already in --out and start over")
    p.add_argument("--batch-size", type=int, default=None, help="rows per reward-client call")
    p.add_argument("--device", default=None, help="torch device of an in-process reward model")
    keep = p.add_mutually_exclusive_group()
    keep.add_argument("--top-k", type=int, default=None, help="keep the K best rows")
    keep.add_argument("--top-fraction", type=float, default=None, help="keep this fraction of scored rows")
    p.add_argument("--threshold", type=float, default=None, help="keep rows whose ranking key is >= T")
    p.add_argument("--min-dim", action="append", default=None, metavar="DIM=MIN",
                   help="minimum mu of one dimension, e.g. visual_quality=2.5 (repeatable)")
    p.add_argument("--uncertainty-k", type=float, default=None, help="rank by score - k * sigma (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--reproduce-table3", action="store_true",
                   help="run the miniature paper Table 3 on the editworld (full vs curated vs random SFT)")
    p.add_argument("--budget-minutes", type=float, default=None, help="table 3: SFT minutes per arm (default: preset)")

    # ---- best-of-N (rollout/best_of_n_commands.py) ----
    p = _command(top, "best-of-n", "rollout.best_of_n_commands:run",
                 "sample N edits, rank them with the reward model, keep the best; or --sweep on held-out editworld tasks")
    p.add_argument("--editor", default="editworld-tiny", help="editor spec or local folder (default: the shipped tiny editor)")
    p.add_argument("--reward", default=None, help="reward checkpoint folder, ray://NAME[@ADDRESS], or ensemble:SPEC1,SPEC2,... (the members' mixture)")
    p.add_argument("--service", default=None, metavar="NAME", help="score through the running `editrl reward serve --name NAME`")
    p.add_argument("--ray-address", default=None, help="Ray cluster of --service (default: auto)")
    p.add_argument("--source", default=None, help="source image")
    p.add_argument("--instruction", default=None, help="edit instruction")
    p.add_argument("--n", type=int, default=None, help="number of candidates to sample")
    p.add_argument("--select", default="aggregate", choices=["aggregate", "lcb"],
                   help="aggregate: highest aggregated mu; lcb: highest aggregated mu - k * sigma")
    p.add_argument("--k", type=float, default=1.0, help="uncertainty weight of --select lcb (default 1.0)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--steps", type=int, default=10, help="sampling steps")
    p.add_argument("--noise-level", type=float, default=0.7, help="SDE noise level (> 0 so candidates differ)")
    p.add_argument("--guidance", type=float, default=None, help="editor guidance (default: the editor's)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--batch-size", type=int, default=32, help="images per sampler call and reward batch size")
    p.add_argument("--device", default=None, help="torch device of editor and in-process reward model (default CPU)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--sweep", action="store_true", help="oracle score of the chosen edit against N on held-out tasks")
    p.add_argument("--tasks", type=int, default=64, help="sweep: held-out editworld tasks")
    p.add_argument("--ns", default="1,2,4,8,16", help="sweep: comma-separated N values")
    p.add_argument("--task-seed", type=int, default=None, help="sweep: task seed (default editworld.tasks.HELD_OUT_SEED)")
    p.add_argument("--size", type=int, default=None, help="sweep: editworld image size (default: the editor's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    # ---- demo: the whole story on the embedded default -------------------------------------------------
    p = _command(top, "demo", "editrl.demo:run", "run the embedded-default demo end to end and write an HTML report")
    p.add_argument("--out", default="runs/demo", help="output folder (report.html goes here)")
    p.add_argument("--groups", type=int, default=None, help="editworld groups to generate (default 300; 12 with --quick)")
    p.add_argument("--seed", type=int, default=0, help="seed of the world, the training runs and the sampling")
    p.add_argument("--reward", default=None,
                   help="reward checkpoint (default: the shipped tiny model if it holds weights, else one the demo trains briefly)")
    p.add_argument("--quick", action="store_true", help="every stage at a tiny size (a smoke test; numbers mean nothing)")
    p.add_argument("--skip", default=None, metavar="STAGE,...", help="stages to skip: world, reward, curate, best-of-n, grpo")

    # ---- gpu-check: full-size figures on one GPU (scripts/gpu_check.sh runs it part by part) ------------
    p = _command(top, "gpu-check", "editrl.gpu_check:run",
                 "reward / editor / RL / reward-training figures at the real model shapes (random weights) on one GPU")
    p.add_argument("--out", default="docs/performance", help="folder of the run JSON files and README.md with their table")
    p.add_argument("--part", action="append", default=None, choices=["reward", "editor", "grpo", "reward-train"],
                   help="part to run (repeatable; default: all, in one process)")
    p.add_argument("--json", default=None, help="the run's JSON file (default: a new one in --out named by date and device)")
    p.add_argument("--init", action="store_true", help="only write the run's JSON header (device, versions, commit); print its path")
    p.add_argument("--dry-run", action="store_true", help="every part on CPU at tiny shapes (seconds; figures mean nothing)")
    p.add_argument("--budget", type=float, default=None, help="seconds this call may take: optional figures are skipped near it")
    p.add_argument("--mark", default=None, metavar="PART=WHY", help="record that a part was cut off (after a timeout)")
    p.add_argument("--table", action="store_true", help="regenerate the results table of --out/README.md from its JSON files")

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from editrl.config import ConfigError
    from editrl.io import DataError

    try:
        code = args.func(args)
    except (ConfigError, DataError, ConnectionError) as err:  # bad flags, bad input, no reward service there
        print(f"editrl: error: {err}", file=sys.stderr)
        code = 2
    code = int(code or 0)
    client = sys.modules.get("reward.serve.client")
    if argv is None and client is not None and client.abandoned_ray_init():
        # a command-line run (not a caller passing argv) whose ray.init never returned: end without the interpreter
        # shutdown that Ray's blocked core thread turns into an abort, keeping the exit code
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
