"""The reward evaluation suite: the paper's Table 2 for any set of checkpoints and the baselines.

``run_eval_suite`` scores every item of every given benchmark with each method (reward checkpoints through
``reward.eval.editworld_bench.model_scorer``; baselines random / pixel heuristic / untrained backbone with heads),
writes the per-item scores to ``OUT/scores/<method>/<bench>.jsonl`` (``reward.eval.score_files``) and computes
the metrics from those files only, so ``--from-scores OUT`` recomputes the same table without loading any model.
Two tables come out of the same scores: editrl's metrics (``rows``) and the official ``eval_bench.py`` protocol
(``official_rows``, ``reward.eval.official_protocol``); ``protocol`` picks which are printed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from editrl.config import ConfigError
from editrl.io import DataError
from reward.eval.score_files import BENCHES, LoadedBench, load_bench, read_scores, write_scores
from reward.eval.table_render import compute_table, write_outputs

BENCH_ALIASES = {
    "genai": "genai", "genai_bench_edit": "genai", "genai-bench": "genai", "genai_bench": "genai",
    "aurora": "aurora", "aurora_bench": "aurora", "aurora-bench": "aurora",
    "aurora_pointwise": "aurora_point", "aurora-pointwise": "aurora_point", "aurora_point": "aurora_point",
    "imagenhub": "imagenhub",
    "editreward": "editreward", "editreward_bench": "editreward", "editreward-bench": "editreward",
    "editworld": "editworld",
}
BASELINES = {"random": "random", "pixel": "pixel-difference heuristic", "untrained": "untrained backbone + heads"}


# ---- arguments -----------------------------------------------------------------------------------

def parse_bench_args(specs: Sequence[str] | None) -> dict[str, Path]:
    """``["genai=PATH", ...]`` -> {canonical bench name: path}; unknown names and missing paths are errors."""
    out: dict[str, Path] = {}
    for spec in specs or ():
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--bench {spec!r}: expected NAME=PATH with NAME one of genai, aurora, aurora_pointwise, "
                              "imagenhub, editreward")
        key = BENCH_ALIASES.get(name.strip().lower())
        if key is None or key == "editworld":
            raise ConfigError(f"--bench {spec!r}: unknown benchmark {name!r}; expected one of genai, aurora, "
                              "aurora_pointwise, imagenhub, editreward (the editworld bench comes from --data)")
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


# ---- the suite -----------------------------------------------------------------------------------

def _checkpoint_names(checkpoints: Sequence[str | Path]) -> list[str]:
    if len(checkpoints) == 1:
        return ["reward model"]
    names = []

    def short(c: str | Path) -> str:
        p = Path(c)
        return f"{p.parent.name}/{p.name}" if p.name in ("final", "eval") or p.name.startswith(("step_", "step-")) else p.name

    from reward.serve.ensemble import member_specs

    for c in checkpoints:
        members = member_specs(str(c))
        base = "ensemble of " + " + ".join(map(short, members)) if len(members) > 1 else short(c)
        name = f"reward model ({base})"
        while name in names:
            name += "'"
        names.append(name)
    return names


def run_eval_suite(checkpoints: Sequence[str | Path] = (), *, data: str | Path | None = None,
                   benches: dict[str, Path] | None = None, image_root: str | Path | None = None,
                   baselines: Sequence[str] = ("random", "pixel", "untrained"), out_dir: str | Path,
                   batch_size: int = 64, max_items: int | None = None, progress: bool = True,
                   console: Any = None, protocol: str = "both") -> dict[str, Any]:
    """Score every bench with every checkpoint and baseline, save the scores, print / write Table 2."""
    from reward.eval.editworld_bench import (load_model_for_eval, model_scorer, pixel_heuristic_scorer, random_scorer,
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
    write_rejects(out, loaded)
    from reward.serve.ensemble import member_specs

    members_of = {str(c): member_specs(str(c)) for c in checkpoints}
    for c in checkpoints:
        for m in members_of[str(c)]:
            if not Path(m).is_dir():
                raise DataError(m, "reward checkpoint directory not found")

    methods: list[tuple[str, str, Callable[[], Any]]] = []  # (display, slug, make scorer)
    first_cfg: list[Any] = []

    def ckpt_scorer(path):
        def make_one(member):
            model, processor, cfg = load_model_for_eval(member)
            first_cfg.append(cfg)
            return model_scorer(model, processor, cfg, batch_size, progress)

        def make():
            fns = [make_one(m) for m in members_of[str(path)]]
            if len(fns) == 1:
                return fns[0]
            return lambda units: np.mean([fn(units) for fn in fns], axis=0).tolist()  # the ensemble's mean score
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
    write_outputs(result, out, console, protocol)
    if data is not None:  # the editworld-only eval's outputs, as `reward eval --data` always wrote them
        legacy = {m: {"pairwise_accuracy": d["editworld"]["accuracy"], "pairs": d["editworld"]["pairs"]}
                  for m, d in result["details"].items() if "editworld" in d}
        (out / "editworld_eval.json").write_text(json.dumps({"checkpoint": str(checkpoints[0]), "data": str(data),
                                                             "results": legacy}, indent=1))
        src = out / "scores" / methods[0][1] / "editworld.jsonl"
        with (out / "scores_reward.jsonl").open("w") as f:
            for row in read_scores(src, "editworld"):
                f.write(json.dumps({"id": row["item"], "group_id": row["group_id"], "score": row["scores"][0]}) + "\n")
        from reward.eval.calibration import calibrate_checkpoints  # ECE against the true order, reliability PNG

        single = {n: c for n, c in zip(_checkpoint_names(checkpoints), checkpoints) if len(members_of[str(c)]) == 1}
        result["calibration"] = calibrate_checkpoints(single,
                                                      loaded[0].units, out / "calibration", batch_size=batch_size,
                                                      progress=progress, console=console)
    return result


def write_rejects(out: Path, loaded: Sequence[LoadedBench]) -> Path | None:
    """``OUT/rejects.jsonl``: the rows a benchmark loader skipped, each with file, line, field and reason."""
    from editrl.io import write_jsonl

    rows = [{"bench": b.name, "file": e.path, "line": e.line, "field": e.field, "reason": e.reason}
            for b in loaded for e in b.meta.get("rejects", [])]
    path = out / "rejects.jsonl"
    if not rows:
        path.unlink(missing_ok=True)
        return None
    write_jsonl(path, rows)
    print(f"reward eval: {len(rows)} rows rejected (file:line, field, reason in {path}); the first: "
          f"{rows[0]['file']}:{rows[0]['line']}: field {rows[0]['field']!r}: {rows[0]['reason']}")
    return path


def run_from_scores(scores_dir: str | Path, out_dir: str | Path | None = None, console: Any = None,
                    protocol: str = "both") -> dict[str, Any]:
    """Recompute both tables from saved scores (no model is loaded); outputs go to ``out_dir`` (default: scores_dir)."""
    result = compute_table(scores_dir)
    result["inputs"] = {"from_scores": str(scores_dir)}
    return write_outputs(result, out_dir or scores_dir, console, protocol)


__all__ = ["parse_bench_args", "parse_baselines", "run_eval_suite", "run_from_scores"]
