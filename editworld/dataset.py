"""Writes an editworld dataset: images, the candidate manifest, preference pairs (ours and the official
EditReward-Data layout) and EditReward-Bench-style K = 2/3/4 groups. Layout: docs/contracts.md."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Callable

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
TIE_SHARE_K2 = 0.2  # share of benchmark K = 2 items drawn as a tied pair when the group has one


def _mean(v: list[int] | float) -> float:
    return sum(v) / len(v) if isinstance(v, list) else float(v)


def _overall(scores: dict[str, list[int]] | dict[str, float]) -> float:
    return sum(_mean(scores[d]) for d in DIMENSIONS) / len(DIMENSIONS)


def _save_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path, format="PNG", optimize=False)


def generate(out: str | Path, cfg: WorldConfig, progress: bool = True) -> dict:
    """Generate the dataset into ``out``; returns the summary (also written as summary.json).

    Each group draws from its own seeded generator, so the output is the same whatever the number of
    worker processes; ``cfg.workers`` > 1 spreads groups over processes (results kept in group order)."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "bench").mkdir(exist_ok=True)
    save_config(cfg, out / "config.yaml")
    jobs = [(out, cfg, g) for g in range(cfg.groups)]
    bar = dict(total=cfg.groups, desc="editworld", disable=not progress)
    if cfg.workers > 1 and cfg.groups >= 4 * cfg.workers:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(cfg.workers) as pool:
            results = list(tqdm(pool.imap(_write_group, jobs, chunksize=16), **bar))
    else:
        results = [_write_group(job) for job in tqdm(jobs, **bar)]
    rows = [r for res in results for r in res["rows"]]
    pairs = [p for res in results for p in res["pairs"]]
    bench = [b for res in results for b in res["bench"]]
    write_jsonl(out / "manifest.jsonl", rows)
    write_jsonl(out / "pairs.jsonl", pairs)
    official = [_official(p) for p in pairs]
    (out / "editreward_pairs.json").write_text(json.dumps(official, indent=1, sort_keys=True))
    (out / "bench" / "editreward_bench.json").write_text(json.dumps(bench, indent=1, sort_keys=True))
    summary = {"groups": cfg.groups, "candidates": len(rows), "train_pairs": len(pairs),
               "tie_pairs": sum(p["tie"] for p in pairs), "disentangle_pairs": sum(p["disentangle"] for p in pairs),
               "bench_groups": {str(k): sum(1 for b in bench if b["K"] == k) for k in (2, 3, 4)}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    return summary


def _write_group(job: tuple[Path, WorldConfig, int]) -> dict[str, list[dict]]:
    """Render, score, annotate and save one group; returns its manifest rows, train pairs and bench tuples."""
    out, cfg, g = job
    rng = np.random.default_rng([cfg.seed, g])
    task = sample_task(rng, cfg.size)
    n_bench = int(round(cfg.groups * cfg.bench_fraction))
    split = "bench" if g >= cfg.groups - n_bench else "train"
    gid = f"g{g:06d}"
    src_rel, tgt_rel = f"images/{gid}_source.png", f"images/{gid}_target.png"
    _save_png(out / src_rel, task.source_array(cfg.size))
    _save_png(out / tgt_rel, task.target_array(cfg.size))
    rows = []
    for k, cand in enumerate(sample_group(task, cfg.candidates, cfg.size, rng)):
        rel = f"images/{gid}_c{k}.png"
        _save_png(out / rel, cand.image)
        human = annotate(cand.scores, 3 if split == "bench" else 1, rng, cfg.annotator_flip)
        rows.append({"id": f"{gid}_c{k}", "group_id": gid, "split": split, "source": src_rel, "target": tgt_rel,
                     "edited": rel, "instruction": task.instruction, "task": task.to_dict(),
                     "editor": cand.editor_info(), "true_scores": cand.scores, "human_scores": human})
    if split == "train":
        return {"rows": rows, "pairs": [pair_row(a, b) for a, b in itertools.combinations(rows, 2)], "bench": []}
    return {"rows": rows, "pairs": [], "bench": _bench_groups(rows, rng)}


def _mean_scores(row: dict) -> dict[str, float]:
    return {d: _mean(row["human_scores"][d]) for d in DIMENSIONS}


def pair_row(a: dict, b: dict, tie_margin: float = 0.0, name: Callable[[dict], str] | None = None) -> dict:
    """The ``pairs.jsonl`` row comparing two manifest rows of one group by their mean human scores: the better
    overall first; a tie when the overall scores are equal or differ by less than ``tie_margin``. ``name`` turns a
    row's ``editor`` field into the editor's name (default: the simulated editor's, ``editor_name``)."""
    name = name or editor_name
    sa, sb = _mean_scores(a), _mean_scores(b)
    oa, ob = _overall(sa), _overall(sb)
    if ob > oa:
        a, b, sa, sb, oa, ob = b, a, sb, sa, ob, oa
    tie = oa == ob or oa - ob < tie_margin
    d1, d2 = (sa[d] - sb[d] for d in DIMENSIONS)
    return {"group_id": a["group_id"], "source": a["source"], "instruction": a["instruction"],
            "preferred": a["edited"], "rejected": b["edited"], "preferred_id": a["id"], "rejected_id": b["id"],
            "preferred_editor": name(a["editor"]), "rejected_editor": name(b["editor"]),
            "preferred_scores": sa, "rejected_scores": sb, "tie": tie, "disentangle": bool(tie and d1 * d2 < 0)}


def _official(p: dict) -> dict:
    """One pair in the official EditReward-Data JSON layout (TIGER-AI-Lab/EditReward TRAIN_README): path1
    is the preferred image, dim1 = instruction following, dim2 = visual quality, overall = their sum,
    ``tie_case`` marks equal overall scores; model1/2 name the simulated editor behind each image."""
    s1, s2 = p["preferred_scores"], p["rejected_scores"]
    dim1, dim2 = DIMENSIONS
    return {"prompt": p["instruction"], "choice_dist": None, "confidence": None,
            "path_src": p["source"], "path1": p["preferred"], "path2": p["rejected"],
            "model1": p["preferred_editor"], "model2": p["rejected_editor"],
            "model1_dim1_score": s1[dim1], "model1_dim2_score": s1[dim2], "model1_overall_score": s1[dim1] + s1[dim2],
            "model2_dim1_score": s2[dim1], "model2_dim2_score": s2[dim2], "model2_overall_score": s2[dim1] + s2[dim2],
            "tie_case": p["tie"]}


def editor_name(editor: dict) -> str:
    """'editworld/partial2+blur1' — the simulated editor (failure modes and severities) as a model name."""
    parts = [f"{editor[f]}{editor[s] or ''}" for f, s in (("if_failure", "if_severity"), ("vq_failure", "vq_severity"))
             if editor[f] != "none"]
    return "editworld/" + ("+".join(parts) or "exact")


def ranking_string(overall: list[float]) -> str:
    """'C>A>B' / 'A=B>C' from overall scores of candidates A, B, C, ..."""
    order = sorted(range(len(overall)), key=lambda i: (-overall[i], i))
    out = LETTERS[order[0]]
    for prev, cur in zip(order, order[1:]):
        out += ("=" if overall[cur] == overall[prev] else ">") + LETTERS[cur]
    return out


def _bench_groups(group: list[dict], rng: np.random.Generator) -> list[dict]:
    """One K = 2, 3 and 4 tuple per benchmark group, favouring close calls as the paper does: among all
    K-subsets of the group, the one with the smallest spread of overall scores (ties broken at random).
    K = 3 and 4 need a strict ranking (as in EditReward-Bench, whose multi-way rankings have no ties);
    K = 2 keeps a tied pair now and then ('A=B', 'A=B=Good' / 'A=B=Bad' in the official vote)."""
    overall = [_overall(r["human_scores"]) for r in group]
    out = []
    for k in (2, 3, 4):
        subsets = [list(c) for c in itertools.combinations(range(len(group)), k)]
        subsets = [subsets[i] for i in rng.permutation(len(subsets))]
        allow_tie = k == 2 and rng.random() < TIE_SHARE_K2
        best = None
        for idx in subsets:
            vals = sorted(overall[i] for i in idx)
            strict = all(b > a for a, b in zip(vals, vals[1:]))
            if allow_tie and vals[0] == vals[-1]:
                best = (0.0, idx)
                break
            if strict and (best is None or vals[-1] - vals[0] < best[0]):
                best = (vals[-1] - vals[0], idx)
        if best is None:
            continue
        idx = best[1]
        scores = [overall[i] for i in idx]
        ranking = ranking_string(scores)
        vote = ranking if "=" not in ranking else ranking + ("=Good" if scores[0] >= 2.5 else "=Bad")
        paths = [group[i]["edited"] for i in idx]
        out.append({"id": f"{group[0]['group_id']}_k{k}", "K": k, "prompt": group[0]["instruction"],
                    "path_src": group[0]["source"], "paths_generated": paths, "candidates": paths,
                    "candidate_ids": [group[i]["id"] for i in idx], "models": [editor_name(group[i]["editor"]) for i in idx],
                    "scores": scores, "ranking": ranking, "human_vote": {"ranking": vote}})
    return out
