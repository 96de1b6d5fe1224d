"""Loaders for the external reward-model benchmarks of the paper (Table 2), in the layouts they ship in.

No hub is reachable here: a user with the data on disk points ``--bench`` at it. Image paths are
resolved against ``image_root`` when given, else against the JSON file's folder and then its parent
(editworld writes ``bench/editreward_bench.json`` with paths relative to the dataset root). Every image is
checked to exist; a missing field, a wrong type or a missing image is an ``editrl.io.DataError`` naming
the file, the item index (``file[i]``) and the field.

Pairs — GenAI-Bench-Edit and AURORA-Bench (pair-wise split) -> ``PairItem``
    The JSON list read by the official ``evaluate/eval_bench.py`` (``valid_set2_full.json``,
    ``valid_aurora_human_ratings_pairwise.json``)::

        {"prompt": str, "path_src": str, "path1": str, "path2": str,
         "model1_dim1_score": num, "model2_dim1_score": num, ...}

    label = sign(model1_dim1_score - model2_dim1_score): +1 first, -1 second, 0 tie. The native
    GenAI-Bench ``image_edition`` rows (exported with image paths) are read too::

        {"instruct_prompt": str, "source_image": str, "left_image": str, "right_image": str,
         "vote_type": "leftvote" | "rightvote" | "tievote" | "bothbad_vote"}

    (both tie votes are label 0). A JSONL file with the same rows works as well.

Point-wise — ImagenHub text-guided editing -> ``PointItem``
    The JSON list of the official script (``valid_imagenhub_processed.json``)::

        {"instruction": str, "input_path": str, "output_path": str, "model": str,
         "score": num | [num per rater] | [[SC, PQ] per rater], "filename"?: str}

    ``human_scores`` holds one overall score per rater; a rater's ``[SC, PQ]`` becomes ImagenHub's
    overall ``sqrt(SC * PQ)``. With three raters ``imagenhub_human_upper_bound`` gives the
    human-to-human Spearman bound.

Groups — EditReward-Bench (K = 2, 3, 4) -> ``GroupItem``
    A folder with ``EditReward_Bench_2pair.json`` / ``_3pair`` / ``_4pair`` (whichever exist), or one such
    file, or editworld's ``bench/editreward_bench.json``::

        {"prompt": str, "path_src": str, "paths_generated" | "candidates": [str, ...],
         "human_vote": {"ranking": "C>A>B"} | "ranking": "C>A>B"}

    Rankings name candidates by letter (A = first); the official two-way labels ``"A=B=Good"`` /
    ``"A=B=Bad"`` become ``"A=B"`` and ``"A<B"`` becomes ``"B>A"``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from editrl.io import DataError

EDITREWARD_BENCH_FILES = ("EditReward_Bench_2pair.json", "EditReward_Bench_3pair.json", "EditReward_Bench_4pair.json")
GENAI_VOTES = {"leftvote": 1, "rightvote": -1, "tievote": 0, "bothbad_vote": 0}


@dataclass(frozen=True)
class PairItem:
    """One human pairwise judgement: label +1 if ``first`` is preferred, -1 if ``second``, 0 for a tie."""

    source: str
    instruction: str
    first: str
    second: str
    label: int


@dataclass(frozen=True)
class PointItem:
    """One edit rated on its own; ``human_scores`` has one overall score per rater."""

    source: str
    instruction: str
    edited: str
    model_name: str
    human_scores: tuple[float, ...]

    @property
    def human_score(self) -> float:
        """The raters' mean."""
        return sum(self.human_scores) / len(self.human_scores)


@dataclass(frozen=True)
class GroupItem:
    """K candidate edits of one (source, instruction) with the human ranking, e.g. ``"C>A>B"``."""

    source: str
    instruction: str
    candidates: tuple[str, ...]
    ranking: str
    K: int


# ---- shared helpers --------------------------------------------------------------------------------

def _read_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Rows of a JSON list (``file[i]``) or a JSONL file (``file:line``), each with where it came from."""
    if not path.is_file():
        raise DataError(path, "benchmark file not found")
    if path.suffix == ".jsonl":
        from editrl.io import iter_jsonl

        return [(f"{path}:{line}", row) for line, row in iter_jsonl(path)]
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(path, f"malformed JSON ({err.msg})", line=err.lineno) from err
    if not isinstance(data, list):
        raise DataError(path, f"expected a JSON list of items, got {type(data).__name__}")
    rows = []
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise DataError(f"{path}[{i}]", f"expected a JSON object, got {type(row).__name__}")
        rows.append((f"{path}[{i}]", row))
    if not rows:
        raise DataError(path, "no items in this file")
    return rows


def _field(row: dict[str, Any], where: str, *names: str) -> Any:
    for name in names:
        if name in row:
            return row[name]
    raise DataError(where, "missing required field", field=" or ".join(names))


def _text(row: dict[str, Any], where: str, *names: str) -> str:
    value = _field(row, where, *names)
    if not isinstance(value, str) or not value.strip():
        raise DataError(where, f"expected a non-empty string, got {value!r}", field=names[0])
    return value


def _number(value: Any, where: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(where, f"expected a finite number, got {value!r}", field=field)
    return float(value)


def _image(row: dict[str, Any], where: str, roots: Sequence[Path], *names: str) -> str:
    rel = _text(row, where, *names)
    p = Path(rel)
    candidates = [p] if p.is_absolute() else [root / p for root in roots]
    for c in candidates:
        if c.is_file():
            return str(c)
    raise DataError(where, f"image not found: {rel} (looked in {', '.join(str(c.parent) for c in candidates)})",
                    field=names[0])


def _roots(path: Path, image_root: str | Path | None) -> list[Path]:
    return [Path(image_root)] if image_root is not None else [path.parent, path.parent.parent]


# ---- pairs: GenAI-Bench-Edit, AURORA-Bench -----------------------------------------------------------

def load_pair_bench(path: str | Path, image_root: str | Path | None = None) -> list[PairItem]:
    """Pairwise items from the official processed layout or native GenAI-Bench vote rows (see module doc)."""
    path = Path(path)
    roots = _roots(path, image_root)
    items = []
    for where, row in _read_rows(path):
        if "vote_type" in row:
            vote = row["vote_type"]
            if vote not in GENAI_VOTES:
                raise DataError(where, f"unknown vote {vote!r}; expected one of {sorted(GENAI_VOTES)}", field="vote_type")
            items.append(PairItem(
                source=_image(row, where, roots, "source_image"),
                instruction=_text(row, where, "instruct_prompt", "prompt"),
                first=_image(row, where, roots, "left_image"), second=_image(row, where, roots, "right_image"),
                label=GENAI_VOTES[vote]))
            continue
        s1 = _number(_field(row, where, "model1_dim1_score"), where, "model1_dim1_score")
        s2 = _number(_field(row, where, "model2_dim1_score"), where, "model2_dim1_score")
        items.append(PairItem(
            source=_image(row, where, roots, "path_src"), instruction=_text(row, where, "prompt"),
            first=_image(row, where, roots, "path1"), second=_image(row, where, roots, "path2"),
            label=(s1 > s2) - (s1 < s2)))
    return items


def load_genai_bench_edit(path: str | Path, image_root: str | Path | None = None) -> list[PairItem]:
    """GenAI-Bench image-editing pairs (``valid_set2_full.json`` or native vote rows)."""
    return load_pair_bench(path, image_root)


def load_aurora_bench(path: str | Path, image_root: str | Path | None = None) -> list[PairItem]:
    """AURORA-Bench pair-wise split (``valid_aurora_human_ratings_pairwise.json``)."""
    return load_pair_bench(path, image_root)


# ---- point-wise: ImagenHub -------------------------------------------------------------------------

def _rater_scores(value: Any, where: str) -> tuple[float, ...]:
    if not isinstance(value, list):
        return (_number(value, where, "score"),)
    if not value:
        raise DataError(where, "expected at least one rater score", field="score")
    out = []
    for r, v in enumerate(value):
        if isinstance(v, list):  # ImagenHub [SC, PQ] -> overall sqrt(SC * PQ)
            if len(v) != 2:
                raise DataError(where, f"rater {r}: expected [SC, PQ], got {v!r}", field="score")
            sc, pq = (_number(x, where, "score") for x in v)
            if sc < 0 or pq < 0:
                raise DataError(where, f"rater {r}: SC and PQ must be >= 0, got {v!r}", field="score")
            out.append(math.sqrt(sc * pq))
        else:
            out.append(_number(v, where, "score"))
    return tuple(out)


def load_imagenhub(path: str | Path, image_root: str | Path | None = None) -> list[PointItem]:
    """ImagenHub text-guided editing ratings (``valid_imagenhub_processed.json`` layout, see module doc)."""
    path = Path(path)
    roots = _roots(path, image_root)
    items = []
    for where, row in _read_rows(path):
        model = row.get("model", "unknown")
        if not isinstance(model, str) or not model:
            raise DataError(where, f"expected a model name, got {model!r}", field="model")
        items.append(PointItem(
            source=_image(row, where, roots, "input_path"), instruction=_text(row, where, "instruction"),
            edited=_image(row, where, roots, "output_path"), model_name=model,
            human_scores=_rater_scores(_field(row, where, "score"), where)))
    return items


def imagenhub_groups(items: Sequence[PointItem], predicted: Sequence[float]) -> list[tuple[list[float], list[float]]]:
    """``(predicted, human mean)`` per editing model, in first-seen order: the input of ``spearman_fisher_mean``."""
    if len(items) != len(predicted):
        raise ValueError(f"{len(items)} items but {len(predicted)} predictions")
    groups: dict[str, tuple[list[float], list[float]]] = {}
    for it, p in zip(items, predicted):
        g = groups.setdefault(it.model_name, ([], []))
        g[0].append(float(p)), g[1].append(it.human_score)
    return list(groups.values())


def imagenhub_human_upper_bound(items: Sequence[PointItem]) -> float:
    """Human-to-human Spearman (ImagenHub's upper bound): per editing model, each rater against the mean of
    the other raters; all (model, rater) correlations Fisher-averaged. Needs >= 2 raters on every item."""
    from reward.eval.metrics import spearman_fisher_mean

    if not items:
        raise ValueError("no items")
    n_raters = {len(it.human_scores) for it in items}
    if len(n_raters) != 1 or min(n_raters) < 2:
        raise ValueError(f"every item needs the same number (>= 2) of raters, got {sorted(n_raters)}")
    by_model: dict[str, list[tuple[float, ...]]] = {}
    for it in items:
        by_model.setdefault(it.model_name, []).append(it.human_scores)
    pairs = []
    for rows in by_model.values():
        for r in range(len(rows[0])):
            rater = [row[r] for row in rows]
            others = [(sum(row) - row[r]) / (len(row) - 1) for row in rows]
            pairs.append((rater, others))
    return spearman_fisher_mean(pairs)


# ---- groups: EditReward-Bench ---------------------------------------------------------------------

def normalise_ranking(ranking: str) -> str:
    """The official label variants in the ``"C>A>B"`` / ``"A=B"`` form."""
    text = ranking.replace(" ", "")
    if text in ("A=B=Good", "A=B=Bad"):
        return "A=B"
    if "<" in text and ">" not in text:
        return ">".join(reversed(text.split("<")))
    return text


def load_editreward_bench(path: str | Path, image_root: str | Path | None = None) -> list[GroupItem]:
    """EditReward-Bench groups from a folder of ``EditReward_Bench_{2,3,4}pair.json`` or a single file."""
    from reward.eval.metrics import parse_ranking

    path = Path(path)
    if path.is_dir():
        files = [path / name for name in EDITREWARD_BENCH_FILES if (path / name).is_file()]
        if not files and (path / "bench" / "editreward_bench.json").is_file():
            files = [path / "bench" / "editreward_bench.json"]
        if not files:
            raise DataError(path, f"no EditReward-Bench files here (expected {', '.join(EDITREWARD_BENCH_FILES)})")
    else:
        files = [path]
    items = []
    for file in files:
        roots = _roots(file, image_root)
        for where, row in _read_rows(file):
            cands = _field(row, where, "paths_generated", "candidates")
            name = "paths_generated" if "paths_generated" in row else "candidates"
            if not isinstance(cands, list) or len(cands) < 2:
                raise DataError(where, f"expected a list of >= 2 image paths, got {cands!r}", field=name)
            paths = tuple(_image({name: c}, where, roots, name) for c in cands)
            vote = row.get("human_vote")
            if isinstance(vote, dict):
                raw = _field(vote, where, "ranking")
            else:
                raw = _field(row, where, "ranking")
            if not isinstance(raw, str):
                raise DataError(where, f"expected a ranking string such as 'C>A>B', got {raw!r}", field="ranking")
            ranking = normalise_ranking(raw)
            try:
                parse_ranking(ranking, len(paths))
            except ValueError as err:
                raise DataError(where, str(err), field="ranking") from None
            items.append(GroupItem(source=_image(row, where, roots, "path_src"), instruction=_text(row, where, "prompt"),
                                   candidates=paths, ranking=ranking, K=len(paths)))
    return items


LOADERS = {
    "genai_bench_edit": load_genai_bench_edit,
    "aurora_bench": load_aurora_bench,
    "imagenhub": load_imagenhub,
    "editreward_bench": load_editreward_bench,
}

__all__ = [
    "PairItem", "PointItem", "GroupItem", "load_pair_bench", "load_genai_bench_edit", "load_aurora_bench",
    "load_imagenhub", "imagenhub_groups", "imagenhub_human_upper_bound", "normalise_ranking",
    "load_editreward_bench", "LOADERS",
]
