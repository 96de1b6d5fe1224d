"""Scale check: stream-score a large manifest and show that memory does not grow with its size.

    python -m curation.scale_check --rows 100000 --out runs/scale-check [--reward CKPT | random-tiny | null]

Writes a manifest of ``--rows`` rows over a small pool of shared 32x32 editworld images (so disk stays
small), scores it through the same ``score_dataset`` as ``editrl curate``, samples the resident memory
every ``--sample-every`` rows, then runs the selection/report pass, and prints (and writes
``scale_check.json``) rows/s, peak RSS and the RSS samples.

``--reward``: a checkpoint folder; ``random-tiny`` = the tiny Qwen2.5-VL reward architecture with random
weights (the same compute as the trained tiny model); ``null`` = a client that returns constant scores, which
measures the streaming machinery alone (read, decode, batch, write).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any


def rss_mib() -> float:
    """Current resident set size of this process in MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_manifest(root: Path, rows: int, pool: int = 64, size: int = 32) -> Path:
    """``rows`` manifest rows cycling over ``pool`` editworld tasks' source/target images (written once)."""
    from PIL import Image

    from editworld.tasks import sample_tasks

    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    tasks = sample_tasks(pool, seed=5, size=size)
    for i, t in enumerate(tasks):
        Image.fromarray(t.source_array(size)).save(root / "images" / f"{i}_s.png")
        Image.fromarray(t.target_array(size)).save(root / "images" / f"{i}_t.png")
    path = root / "manifest.jsonl"
    with path.open("w") as f:
        for r in range(rows):
            i = (r * 7) % pool  # neighbours differ, so no shared-prefix grouping flatters the numbers
            f.write(json.dumps({"id": f"r{r}", "source": f"images/{i}_s.png", "instruction": tasks[i].instruction,
                                "target": f"images/{i}_t.png"}) + "\n")
    return path


class NullClient:
    """Constant scores: isolates the cost of the streaming machinery."""

    def score_groups(self, groups: Any) -> list[list[Any]]:
        from reward.serve.scorer import ScoredEdit

        mu = {"instruction_following": 3.0, "visual_quality": 3.0}
        sg = {"instruction_following": 0.1, "visual_quality": 0.1}
        return [[ScoredEdit(dict(mu), dict(sg), 3.0, 0.07) for _ in edited] for _, _, edited in groups]


class MemorySampler:
    """Wraps a reward client and records RSS each time ``every`` more rows have been scored."""

    def __init__(self, client: Any, every: int) -> None:
        self.client, self.every, self.rows, self.next_at = client, every, 0, every
        self.samples: list[dict[str, float]] = []
        self.start = time.perf_counter()

    def score_groups(self, groups: Any) -> list[list[Any]]:
        out = self.client.score_groups(groups)
        self.rows += sum(len(g) for g in out)
        if self.rows >= self.next_at:
            self.samples.append({"rows": self.rows, "rss_mib": round(rss_mib(), 1),
                                 "seconds": round(time.perf_counter() - self.start, 1)})
            print(f"\nscale_check: {json.dumps(self.samples[-1])}", file=sys.stderr, flush=True)
            self.next_at += self.every
        return out


def make_client(spec: str, device: str | None, batch_size: int) -> Any:
    """The client named by ``--reward``."""
    if spec == "null":
        return NullClient()
    import torch

    from reward.serve.scorer import RewardScorer

    if spec == "random-tiny":
        from reward.model.config import RewardModelConfig
        from reward.model.editreward import build_reward_model

        torch.manual_seed(0)
        cfg = RewardModelConfig()
        model, processor = build_reward_model(cfg)
        return RewardScorer(model, processor, cfg, batch_size=batch_size, device=device)
    return RewardScorer.from_checkpoint(spec, device=device, batch_size=batch_size)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from curation.config import CurateConfig, SelectionConfig
    from curation.report import write_outputs
    from curation.scoring import score_dataset

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--out", default="runs/scale-check")
    p.add_argument("--reward", default="random-tiny", help="checkpoint folder, random-tiny or null")
    p.add_argument("--device", default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--sample-every", type=int, default=10_000, help="rows between RSS samples")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out)
    data = out / "data"
    t0 = time.perf_counter()
    manifest = write_manifest(data, args.rows)
    write_s = time.perf_counter() - t0
    client = MemorySampler(make_client(args.reward, args.device, args.batch_size), args.sample_every)
    rss_before = rss_mib()
    cfg = CurateConfig(input=str(manifest), out=str(out / "curate"), batch_size=args.batch_size, progress=True,
                       selection=SelectionConfig(top_fraction=0.4))
    stats = score_dataset(cfg, client)
    t0 = time.perf_counter()
    summary = write_outputs(out / "curate", manifest, cfg.selection, grid_k=8)
    select_s = time.perf_counter() - t0
    result = {"rows": args.rows, "reward": args.reward, "device": args.device or "cpu", "batch_size": args.batch_size,
              "manifest_write_s": round(write_s, 1), "scoring": stats, "select_report_s": round(select_s, 1),
              "rss_before_scoring_mib": round(rss_before, 1), "rss_samples": client.samples,
              "peak_rss_mib": round(peak_rss_mib(), 1), "rss_after_report_mib": round(rss_mib(), 1),
              "kept": summary["kept"], "scored": summary["scored"], "rejected": summary["rejected"]}
    (out / "scale_check.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
