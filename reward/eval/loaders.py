# long: one module for every benchmark layout of Table 2 (they share the row, field and image helpers)
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

Point-wise — AURORA-Bench (point-wise split) -> ``PointItem`` (``load_aurora_pointwise``)
    The JSON list of the official script (``valid_aurora_human_ratings_pointwise.json``)::

        {"prompt": str, "input": str, "gen": str, "score": num, "model"?: str, "filename"?: str}

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
    ``"A=B=Bad"`` become ``"A=B"`` and ``"A<B"`` becomes ``"B>A"``. ``GroupItem.official_ranking`` keeps the
    label as written, which the official protocol reads differently (``reward.eval.official_protocol``).
    An item with an empty ``path_src`` or candidate path is skipped, as the official script skips it.

Groups — EditReward-Bench as on the hub (TIGER-Lab/EditReward-Bench), one row per comparison -> ``GroupItem``
    A JSON list or JSONL of the hub rows with image paths (a string, or a ``{"path": str}`` as ``datasets``
    exports an image), in a file or in a folder of such files::

        {"id": "<group>_<k>", "dataset"?: "2pair" | "3pair" | "4pair", "instruction": str, "source_image": str,
         "candidate_1": str, "candidate_2": str, "comparison_type": "AvsB" | "AvsC" | ... | "CvsD",
         "ranking": "A>B" | "B>A" | "A=B" | "C>A" | ...}

    Rows are grouped by (dataset, id without its last ``_<k>``); a group of K candidates needs each of its
    C(K, 2) comparisons once, the same source, instruction and image per letter, and outcomes that form one
    ranking, which is rebuilt (``"C>A>B"``, ties as ``"A=B>C"``). A tie of two is ``official_ranking``
    ``"A=B=Good"`` (both official tie labels score alike), since the official protocol reads a bare ``"A=B"`` as A>B.
"""

from __future__ import annotations

import json
import math
import re
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
    official_ranking: str | None = None   # the label as the benchmark writes it (what eval_bench.py parses)


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
    value = _field(row, where, *names)
    if isinstance(value, dict) and "path" in value:  # a ``datasets`` Image exported as {"path", "bytes"}
        row = {names[0]: value["path"]}
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
        if "gen" in row and "input" in row and "path1" not in row:
            raise DataError(where, "this row has AURORA's point-wise layout (prompt, input, gen, score); "
                            "give the file as --bench aurora_pointwise=PATH", field="path1")
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


def _load_points(path: str | Path, image_root: str | Path | None, source: str, instruction: str,
                 edited: str) -> list[PointItem]:
    """Point-wise rows with the given field names; a missing ``model`` is ``"unknown"``, as in the official script."""
    path = Path(path)
    roots = _roots(path, image_root)
    items = []
    for where, row in _read_rows(path):
        model = row.get("model", "unknown")
        if not isinstance(model, str) or not model:
            raise DataError(where, f"expected a model name, got {model!r}", field="model")
        items.append(PointItem(
            source=_image(row, where, roots, source), instruction=_text(row, where, instruction),
            edited=_image(row, where, roots, edited), model_name=model,
            human_scores=_rater_scores(_field(row, where, "score"), where)))
    return items


def load_imagenhub(path: str | Path, image_root: str | Path | None = None) -> list[PointItem]:
    """ImagenHub text-guided editing ratings (``valid_imagenhub_processed.json`` layout, see module doc)."""
    return _load_points(path, image_root, "input_path", "instruction", "output_path")


def load_aurora_pointwise(path: str | Path, image_root: str | Path | None = None) -> list[PointItem]:
    """AURORA-Bench point-wise ratings (``valid_aurora_human_ratings_pointwise.json``: prompt, input, gen, score,
    model)."""
    return _load_points(path, image_root, "input", "prompt", "gen")


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


def _editreward_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    files = [path / name for name in EDITREWARD_BENCH_FILES if (path / name).is_file()]
    if not files and (path / "bench" / "editreward_bench.json").is_file():
        files = [path / "bench" / "editreward_bench.json"]
    if not files:  # a folder of hub-row exports
        files = [f for f in sorted(path.iterdir()) if f.suffix in (".json", ".jsonl") and _is_hub_file(f)]
    if not files:
        raise DataError(path, f"no EditReward-Bench files here (expected {', '.join(EDITREWARD_BENCH_FILES)}, "
                        "or JSON / JSONL files of the hub rows)")
    return files


def _is_hub_file(path: Path) -> bool:
    """Whether a JSON / JSONL file holds the hub's one-row-per-comparison layout (it has ``comparison_type``)."""
    try:
        rows = _read_rows(path)
    except DataError:
        return False
    return "comparison_type" in rows[0][1]


def load_editreward_bench(path: str | Path, image_root: str | Path | None = None,
                          rejects: list[DataError] | None = None) -> list[GroupItem]:
    """EditReward-Bench groups from a folder of ``EditReward_Bench_{2,3,4}pair.json``, a single file, or the hub
    rows (``load_editreward_bench_hub``, recognised by their ``comparison_type``). A bad item raises a DataError
    naming file, item and field, or, when ``rejects`` is a list, is appended to it and skipped."""
    items: list[GroupItem] = []
    skipped: list[DataError] = [] if rejects is None else rejects
    for file in _editreward_files(Path(path)):
        if _is_hub_file(file):
            items += load_editreward_bench_hub(file, image_root, rejects)
            continue
        roots = _roots(file, image_root)
        for where, row in _read_rows(file):
            try:
                items.append(_local_group(row, where, roots))
            except _Skipped as err:  # the official script skips these silently
                skipped.append(err.error)
            except DataError as err:
                if rejects is None:
                    raise
                rejects.append(err)
    if not items:
        raise DataError(path, "no usable EditReward-Bench items" + (f" (the first skipped: {skipped[0]})" if skipped else ""))
    return items


class _Skipped(Exception):
    def __init__(self, error: DataError):
        self.error = error


def _local_group(row: dict[str, Any], where: str, roots: Sequence[Path]) -> GroupItem:
    """One item of the official local layout (see the module doc)."""
    from reward.eval.metrics import parse_ranking

    cands = _field(row, where, "paths_generated", "candidates")
    name = "paths_generated" if "paths_generated" in row else "candidates"
    if not isinstance(cands, list) or len(cands) < 2:
        raise DataError(where, f"expected a list of >= 2 image paths, got {cands!r}", field=name)
    for field_name, value in ((("path_src", row["path_src"]),) if "path_src" in row else ()) + tuple((name, c) for c in cands):
        if value in ("", None):
            raise _Skipped(DataError(where, "empty image path: item skipped, as the official evaluation skips it",
                                     field=field_name))
    paths = tuple(_image({name: c}, where, roots, name) for c in cands)
    vote = row.get("human_vote")
    raw = _field(vote, where, "ranking") if isinstance(vote, dict) else _field(row, where, "ranking")
    if not isinstance(raw, str):
        raise DataError(where, f"expected a ranking string such as 'C>A>B', got {raw!r}", field="ranking")
    ranking = normalise_ranking(raw)
    try:
        parse_ranking(ranking, len(paths))
    except ValueError as err:
        raise DataError(where, str(err), field="ranking") from None
    return GroupItem(source=_image(row, where, roots, "path_src"), instruction=_text(row, where, "prompt"),
                     candidates=paths, ranking=ranking, K=len(paths), official_ranking=raw)


# ---- groups: EditReward-Bench hub rows (one per comparison) -----------------------------------------

HUB_DATASETS = {"2pair": 2, "3pair": 3, "4pair": 4}
_COMPARISON = re.compile(r"^([A-Z])vs([A-Z])$")


def _hub_outcome(ranking: Any, left: str, right: str, where: str) -> int:
    """+1 if ``left`` won the comparison, -1 if ``right``, 0 for a tie."""
    if isinstance(ranking, str):
        text = ranking.replace(" ", "")
        if text in (f"{left}>{right}", f"{right}<{left}"):
            return 1
        if text in (f"{right}>{left}", f"{left}<{right}"):
            return -1
        if text in (f"{left}={right}", f"{right}={left}") or (left + right == "AB" and text in ("A=B=Good", "A=B=Bad")):
            return 0
    raise DataError(where, f"expected the outcome of {left} vs {right} ({left}>{right}, {right}>{left} or "
                    f"{left}={right}), got {ranking!r}", field="ranking")


def _hub_key(row: dict[str, Any]) -> tuple[Any, str]:
    """(dataset, group): the id without its last ``_<k>`` (the first 10 characters of an id without ``_``)."""
    row_id = str(row.get("id", ""))
    return row.get("dataset"), row_id.rsplit("_", 1)[0] if "_" in row_id else row_id[:10]


def _hub_row(row: dict[str, Any], where: str, roots: Sequence[Path]) -> dict[str, Any]:
    """One hub row checked field by field: its group key, letters, images and outcome."""
    row_id = _field(row, where, "id")
    if isinstance(row_id, bool) or not isinstance(row_id, (str, int)) or not str(row_id).strip():
        raise DataError(where, f"expected an id such as 'g12_0', got {row_id!r}", field="id")
    row_id = str(row_id)
    dataset = row.get("dataset")
    if dataset is not None and dataset not in HUB_DATASETS:
        raise DataError(where, f"expected one of {', '.join(HUB_DATASETS)}, got {dataset!r}", field="dataset")
    comparison = _field(row, where, "comparison_type")
    match = _COMPARISON.match(comparison) if isinstance(comparison, str) else None
    if match is None or match.group(1) >= match.group(2):
        raise DataError(where, f"expected 'XvsY' with letters X before Y (e.g. 'AvsC'), got {comparison!r}",
                        field="comparison_type")
    left, right = match.groups()
    return {"where": where, "key": _hub_key(row),
            "K": HUB_DATASETS.get(dataset), "pair": (left, right),
            "outcome": _hub_outcome(_field(row, where, "ranking"), left, right, where),
            "instruction": _text(row, where, "instruction"), "source": _image(row, where, roots, "source_image"),
            "images": {left: _image(row, where, roots, "candidate_1"), right: _image(row, where, roots, "candidate_2")}}


def _same_image(a: str, b: str) -> bool:
    """The same path, or two files with the same bytes (an export may write each row's images apart)."""
    if a == b:
        return True
    pa, pb = Path(a), Path(b)
    return pa.stat().st_size == pb.stat().st_size and pa.read_bytes() == pb.read_bytes()


def _hub_group(rows: list[dict[str, Any]]) -> GroupItem:
    """The K-way group of one id prefix, its ranking rebuilt from the pairwise outcomes."""
    where = rows[0]["where"]
    letters = sorted({x for r in rows for x in r["pair"]})
    k = rows[0]["K"] or len(letters)
    expected = [chr(ord("A") + i) for i in range(k)]
    if letters != expected:
        raise DataError(where, f"group {rows[0]['key'][1]!r}: compares {''.join(letters)}, expected the {k} candidates "
                        f"{''.join(expected)}", field="comparison_type")
    outcome: dict[tuple[str, str], int] = {}
    for r in rows:
        if r["pair"] in outcome:
            raise DataError(r["where"], f"group {r['key'][1]!r}: {r['pair'][0]}vs{r['pair'][1]} appears twice",
                            field="comparison_type")
        outcome[r["pair"]] = r["outcome"]
        if r["instruction"] != rows[0]["instruction"] or not _same_image(r["source"], rows[0]["source"]):
            name = "instruction" if r["instruction"] != rows[0]["instruction"] else "source_image"
            raise DataError(r["where"], f"group {r['key'][1]!r}: differs from the group's first row ({where})",
                            field=name)
    missing = [f"{a}vs{b}" for i, a in enumerate(expected) for b in expected[i + 1:] if (a, b) not in outcome]
    if missing:
        raise DataError(where, f"group {rows[0]['key'][1]!r}: no row for {', '.join(missing)} "
                        f"(a group of {k} needs all {k * (k - 1) // 2} comparisons)", field="comparison_type")
    images: dict[str, str] = {}
    for r in rows:
        for letter, image in r["images"].items():
            if not _same_image(images.setdefault(letter, image), image):
                raise DataError(r["where"], f"group {r['key'][1]!r}: candidate {letter} is {image}, but "
                                f"{images[letter]} (other bytes) in an earlier row",
                                field="candidate_1" if letter == r["pair"][0] else "candidate_2")
    wins = {x: sum((o > 0) if a == x else (o < 0) for (a, b), o in outcome.items() if x in (a, b)) for x in expected}
    tiers: list[list[str]] = []
    for x in sorted(expected, key=lambda c: (-wins[c], c)):
        if tiers and wins[tiers[-1][0]] == wins[x] and outcome[tuple(sorted((tiers[-1][0], x)))] == 0:
            tiers[-1].append(x)
        else:
            tiers.append([x])
    level = {x: t for t, tier in enumerate(tiers) for x in tier}
    for (a, b), o in outcome.items():
        if o != (level[a] < level[b]) - (level[a] > level[b]):
            raise DataError(where, f"group {rows[0]['key'][1]!r}: the outcomes "
                            f"{', '.join(f'{p}vs{q}:{v:+d}' for (p, q), v in sorted(outcome.items()))} "
                            "form no single ranking", field="ranking")
    ranking = ">".join("=".join(t) for t in tiers)
    official = "A=B=Good" if ranking == "A=B" else ranking
    return GroupItem(source=rows[0]["source"], instruction=rows[0]["instruction"],
                     candidates=tuple(images[x] for x in expected), ranking=ranking, K=k, official_ranking=official)


def load_editreward_bench_hub(path: str | Path, image_root: str | Path | None = None,
                              rejects: list[DataError] | None = None) -> list[GroupItem]:
    """EditReward-Bench groups rebuilt from the hub's one-row-per-comparison layout (see the module doc), in
    first-seen order. A bad row or group raises a DataError naming file, row and field; with ``rejects`` a
    list, it is appended there and its whole group skipped."""
    path = Path(path)
    roots = _roots(path, image_root)
    groups: dict[tuple[Any, str], list[dict[str, Any] | None]] = {}
    for where, row in _read_rows(path):
        try:
            parsed = _hub_row(row, where, roots)
        except DataError as err:
            if rejects is None:
                raise
            rejects.append(err)
            groups.setdefault(_hub_key(row), []).append(None)  # the group is incomplete now
            continue
        groups.setdefault(parsed["key"], []).append(parsed)
    items = []
    for rows in groups.values():
        if any(r is None for r in rows):
            continue
        try:
            items.append(_hub_group(rows))  # type: ignore[arg-type]
        except DataError as err:
            if rejects is None:
                raise
            rejects.append(err)
    if not items:
        raise DataError(path, "no usable EditReward-Bench groups in these hub rows"
                        + (f" ({len(rejects)} rejected; the first: {rejects[0]})" if rejects else ""))
    return items


LOADERS = {
    "genai_bench_edit": load_genai_bench_edit,
    "aurora_bench": load_aurora_bench,
    "aurora_pointwise": load_aurora_pointwise,
    "imagenhub": load_imagenhub,
    "editreward_bench": load_editreward_bench,
}

__all__ = [
    "PairItem", "PointItem", "GroupItem", "load_pair_bench", "load_genai_bench_edit", "load_aurora_bench",
    "load_imagenhub", "imagenhub_groups", "imagenhub_human_upper_bound", "normalise_ranking",
    "load_editreward_bench", "load_editreward_bench_hub", "load_aurora_pointwise", "LOADERS",
]
