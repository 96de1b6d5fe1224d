"""GRPO step time of the editworld preset at the default thread count vs ``threads=1`` vs ``threads=2``.

    python scripts/bench_threads.py [--repeats 3] [--busy 1] [--out docs/experiments/threads-bench.json]

Each run is a fresh ``editrl policy grpo`` process (threads are chosen when torch starts) on
``configs/policy/editworld-grpo.yaml`` shrunk to ``steps=2 data.prompts_per_step=4 eval.num_tasks=0``; the
variants are interleaved (default, 1, 2, default, ...) so that drifting load hits them alike. ``--busy N`` keeps N
cores busy meanwhile with ``python -c 'while True: pass'`` at nice 0 (ended afterwards). Prints the time of step 2
(step 1 warms up) and of the whole command per run, then the median per variant; results for
docs/experiments/threads-busy-machine-2026-12-03.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESET = ["--config", "configs/policy/editworld-grpo.yaml", "steps=2", "checkpoint_every=100",
          "data.prompts_per_step=4", "eval.num_tasks=0"]
VARIANTS = {"default": [], "threads=1": ["threads=1"], "threads=2": ["threads=2"]}


def one_run(extra: list[str], out: Path) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(HF_HUB_OFFLINE="1", WANDB_MODE="disabled")
    chosen = subprocess.run([sys.executable, "-c", "from editrl.threads import default_threads as d; print(d())"],
                            cwd=ROOT, env=env, capture_output=True, text=True).stdout.strip()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "editrl.cli", "policy", "grpo", *PRESET, f"out={out}", *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = {r["step"]: r for r in rows if "time/step" in r}
    return {"step1_s": steps[1]["time/step"], "step2_s": steps[2]["time/step"], "wall_s": wall,
            "default_threads_now": int(chosen) if chosen.isdigit() else -1,
            "reward": steps[2].get("reward/mean", steps[2].get("reward/score", float("nan")))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--busy", type=int, default=1, help="cores kept busy by a spinning process meanwhile")
    parser.add_argument("--out", default=None, help="write the runs as JSON here")
    args = parser.parse_args()
    spinners = [subprocess.Popen(["nice", "-n", "0", sys.executable, "-c", "while True: pass"])
                for _ in range(args.busy)]
    results: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    try:
        time.sleep(2 if spinners else 0)
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(args.repeats):
                for name, extra in VARIANTS.items():
                    r = one_run(extra, Path(tmp) / f"{name}-{rep}")
                    results[name].append(r)
                    print(f"repeat {rep + 1} {name:10s} step2 {r['step2_s']:7.2f} s  step1 {r['step1_s']:7.2f} s  "
                          f"command {r['wall_s']:7.2f} s  (default would pick {r['default_threads_now']})", flush=True)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    print(f"\n{'variant':10s} | step 2 s (median, runs) | command s (median)")
    for name, runs in results.items():
        step2 = [r["step2_s"] for r in runs]
        print(f"{name:10s} | {statistics.median(step2):6.2f} ({', '.join(f'{x:.2f}' for x in step2)}) | "
              f"{statistics.median(r['wall_s'] for r in runs):6.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"busy": args.busy, "load": os.getloadavg(), "runs": results}, indent=1))


if __name__ == "__main__":
    main()
