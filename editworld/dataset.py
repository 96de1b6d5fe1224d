"""Writes an editworld dataset: images, the candidate manifest, preference pairs (ours and the official
EditReward-Data layout) and EditReward-Bench-style K = 2/3/4 groups. Layout: docs/contracts.md."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from editrl.config import save_config
from editrl.io import write_jsonl
from editworld import DIMENSIONS
from editworld.annotators import annotate
from editworld.config import WorldConfig
from editworld.editors import sample_group
from editworld.tasks import sample_task

LETTERS = "ABCDEFG"


def _mean(v: list[int] | float) -> float:
    return sum(v) / len(v) if isinstance(v, list) else float(v)


def _overall(scores: dict[str, list[int]] | dict[str, float]) -> float:
    return sum(_mean(scores[d]) for d in DIMENSIONS) / len(DIMENSIONS)


def _save_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path, format="PNG", optimize=False)


def generate(out: str | Path, cfg: WorldConfig, progress: bool = True) -> dict:
    """Generate the dataset into ``out``; returns the summary (also written as summary.json)."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "bench").mkdir(exist_ok=True)
    save_config(cfg, out / "config.yaml")
    rows, pairs, official, bench = [], [], [], []
    n_bench = int(round(cfg.groups * cfg.bench_fraction))
    for g in tqdm(range(cfg.groups), desc="editworld", disable=not progress):
        rng = np.random.default_rng([cfg.seed, g])
        task = sample_task(rng, cfg.size)
        split = "bench" if g >= cfg.groups - n_bench else "train"
        gid = f"g{g:06d}"
        src_rel, tgt_rel = f"images/{gid}_source.png", f"images/{gid}_target.png"
        _save_png(out / src_rel, task.source_array(cfg.size))
        _save_png(out / tgt_rel, task.target_array(cfg.size))
        group = []
        for k, cand in enumerate(sample_group(task, cfg.candidates, cfg.size, rng)):
            rel = f"images/{gid}_c{k}.png"
            _save_png(out / rel, cand.image)
            human = annotate(cand.scores, 3 if split == "bench" else 1, rng, cfg.annotator_flip)
            row = {"id": f"{gid}_c{k}", "group_id": gid, "split": split, "source": src_rel, "target": tgt_rel,
                   "edited": rel, "instruction": task.instruction, "task": task.to_dict(), "editor": cand.editor_info(),
                   "true_scores": cand.scores, "human_scores": human}
            rows.append(row)
            group.append(row)
        if split == "train":
            for a, b in itertools.combinations(group, 2):
                pairs.append(_pair(a, b))
                official.append(_official(a, b))
        else:
            bench.extend(_bench_groups(group, rng))
    write_jsonl(out / "manifest.jsonl", rows)
    write_jsonl(out / "pairs.jsonl", pairs)
    (out / "editreward_pairs.json").write_text(json.dumps(official, indent=1, sort_keys=True))
    (out / "bench" / "editreward_bench.json").write_text(json.dumps(bench, indent=1, sort_keys=True))
    summary = {"groups": cfg.groups, "candidates": len(rows), "train_pairs": len(pairs),
               "tie_pairs": sum(p["tie"] for p in pairs), "disentangle_pairs": sum(p["disentangle"] for p in pairs),
               "bench_groups": {str(k): sum(1 for b in bench if b["K"] == k) for k in (2, 3, 4)}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    return summary


def _mean_scores(row: dict) -> dict[str, float]:
    return {d: _mean(row["human_scores"][d]) for d in DIMENSIONS}


def _pair(a: dict, b: dict) -> dict:
    sa, sb = _mean_scores(a), _mean_scores(b)
    oa, ob = _overall(sa), _overall(sb)
    if ob > oa:
        a, b, sa, sb = b, a, sb, sa
    tie = oa == ob
    d1, d2 = (sa[d] - sb[d] for d in DIMENSIONS)
    return {"group_id": a["group_id"], "source": a["source"], "instruction": a["instruction"],
            "preferred": a["edited"], "rejected": b["edited"], "preferred_id": a["id"], "rejected_id": b["id"],
            "preferred_scores": sa, "rejected_scores": sb, "tie": tie, "disentangle": bool(tie and d1 * d2 < 0)}


def _official(a: dict, b: dict) -> dict:
    """One pair in the EditReward-Data JSON layout (path1 is the preferred image; dim1 = instruction
    following, dim2 = visual quality; ``ranking`` is 'A>B' or 'A=B')."""
    p = _pair(a, b)
    s1, s2 = p["preferred_scores"], p["rejected_scores"]
    return {"prompt": p["instruction"], "path_src": p["source"], "path1": p["preferred"], "path2": p["rejected"],
            "model1": "editworld", "model2": "editworld",
            "model1_dim1_score": s1["instruction_following"], "model1_dim2_score": s1["visual_quality"],
            "model2_dim1_score": s2["instruction_following"], "model2_dim2_score": s2["visual_quality"],
            "ranking": "A=B" if p["tie"] else "A>B"}


def ranking_string(overall: list[float]) -> str:
    """'C>A>B' / 'A=B>C' from overall scores of candidates A, B, C, ..."""
    order = sorted(range(len(overall)), key=lambda i: (-overall[i], i))
    out = LETTERS[order[0]]
    for prev, cur in zip(order, order[1:]):
        out += ("=" if overall[cur] == overall[prev] else ">") + LETTERS[cur]
    return out


def _bench_groups(group: list[dict], rng: np.random.Generator) -> list[dict]:
    """One K = 2, 3 and 4 tuple per benchmark group, chosen among draws as the closest call whose members
    are not all tied (the paper favours small score differences)."""
    overall = [_overall(r["human_scores"]) for r in group]
    out = []
    for k in (2, 3, 4):
        best = None
        for _ in range(12):
            idx = sorted(rng.choice(len(group), size=k, replace=False).tolist())
            vals = [overall[i] for i in idx]
            spread = max(vals) - min(vals)
            if spread > 0 and (best is None or spread < best[0]):
                best = (spread, idx)
        if best is None:
            continue
        idx = best[1]
        out.append({"id": f"{group[0]['group_id']}_k{k}", "K": k, "prompt": group[0]["instruction"],
                    "path_src": group[0]["source"], "candidates": [group[i]["edited"] for i in idx],
                    "candidate_ids": [group[i]["id"] for i in idx],
                    "scores": [overall[i] for i in idx], "ranking": ranking_string([overall[i] for i in idx])})
    return out
