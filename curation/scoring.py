# long: one streaming pass (validate, reject with file:line, batch, score, checkpoint) reads best in one file
"""Streaming, resumable scoring of an editing dataset with a reward client.

Rows are read one at a time (as bytes, decoded line by line), validated (fields have the right types, the
instruction is non-empty Unicode text within ``editrl.io.InputLimits``, images decode and are within the
limits), batched, scored through the reward-client protocol (``score_groups``; consecutive rows sharing source
and instruction form one group with a shared prefix) and appended to ``scores.jsonl`` as each batch finishes.
Rows that cannot be scored go to ``rejects.jsonl`` with the file, line, field and reason (``<line>`` when the
line as a whole is bad, ``<reward>`` when the reward model failed on a row it was given); a batch the reward
client fails on is split until the row that fails it is found, so one bad row never stops the others. Nothing
is held beyond one batch.

Resume: both output files are written in manifest-line order, so the lines already done are read back as
a short list of line intervals; a restart skips them. A last line cut off by a crash is removed first (its
row is scored again), so every row ends up in exactly one of the two files exactly once.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from tqdm import tqdm

from curation.config import CurateConfig
from editrl.io import DataError, decode_line, iter_lines, load_image, parse_json_row, resolve_path, text_problem

SCORES, REJECTS = "scores.jsonl", "rejects.jsonl"

FOLDER_ALIASES = {
    "source": ("source_image", "input_image", "source_img", "src_img", "original_image"),
    "instruction": ("instruction", "edit_prompt", "edit_instruction", "prompt"),
    "edited": ("edited_image", "output_image", "target_img", "edited_img", "target_image"),
    "id": ("id", "img_id", "file_name"),
}
EDITRL_FIELDS = {"source": ("source",), "instruction": ("instruction",), "edited": ("edited", "target"), "id": ("id",)}


@dataclass
class ManifestRow:
    """One dataset row, its image paths resolved; ``row`` is the row exactly as the input has it."""

    line: int
    id: str
    source: Path
    instruction: str
    edited: Path
    row: dict[str, Any]
    source_field: str
    edited_field: str
    instruction_field: str = "instruction"


@dataclass
class Reject:
    """A row that cannot be scored, and why."""

    line: int
    id: str
    file: str
    field: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "line": self.line, "file": self.file, "field": self.field, "reason": self.reason}


# ---- reading the input ----------------------------------------------------------------------------------
def manifest_path(input_path: str | Path, input_format: str) -> Path:
    """The file that lists the rows of a dataset given as a file or a folder."""
    p = Path(input_path)
    if p.is_file():
        return p
    names = ("manifest.jsonl",) if input_format == "editrl" else ("metadata.jsonl", "metadata.json")
    for name in names:
        if (p / name).is_file():
            return p / name
    raise DataError(p, f"no {' or '.join(names)} here (input_format={input_format!r})")


def _raw_lines(path: Path) -> Iterator[tuple[int, str | DataError]]:
    """(line number, text) of each non-blank line, an undecodable line as a DataError; a metadata.json list gives
    one 'line' per element."""
    if path.suffix == ".json":
        try:
            items = json.loads(decode_line(path.read_bytes(), 1))
        except ValueError as err:  # JSONDecodeError, or bytes that are not UTF-8
            raise DataError(path, f"malformed JSON ({getattr(err, 'msg', err)})", line=getattr(err, "lineno", None)) from err
        except RecursionError:
            raise DataError(path, "malformed JSON (nested too deeply)") from None
        if not isinstance(items, list):
            raise DataError(path, f"expected a JSON list of rows, got {type(items).__name__}")
        for i, item in enumerate(items, start=1):
            yield i, json.dumps(item)
        return
    yield from iter_lines(path)


def count_rows(path: Path) -> int:
    """Number of rows (non-blank lines), streamed as bytes."""
    if path.suffix == ".json":
        return sum(1 for _ in _raw_lines(path))
    with path.open("rb") as f:
        return sum(1 for raw in f if raw.strip())


def _pick(row: dict[str, Any], names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in row), None)


def _row_id(row: dict[str, Any], names: tuple[str, ...], fallback: str) -> str:
    name = _pick(row, names)
    value = row[name] if name is not None else None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return fallback
    text = str(value)
    return text if len(text) <= 200 and not text_problem(text) else fallback


def _path_problem(value: str) -> str | None:
    if not value.strip():
        return "empty image path"
    if "\x00" in value:
        return "image path contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "image path is not valid Unicode text (a lone surrogate)"
    return "image path longer than 4096 characters" if len(value) > 4096 else None


def parse_row(path: Path, line: int, text: str | DataError, input_format: str) -> ManifestRow | Reject:
    """Turn one manifest line into a row with resolved paths, or a Reject naming the line and field."""
    fields = EDITRL_FIELDS if input_format == "editrl" else FOLDER_ALIASES
    fallback_id = f"L{line}"
    try:
        if isinstance(text, DataError):
            raise text
        row = parse_json_row(path, line, text)
    except DataError as err:
        return Reject(line, fallback_id, str(path), err.field, err.reason)
    row_id = _row_id(row, fields["id"], fallback_id)
    picked: dict[str, str] = {}
    for role in ("source", "instruction", "edited"):
        name = _pick(row, fields[role])
        if name is None:
            return Reject(line, row_id, str(path), "/".join(fields[role]), "missing required field")
        if not isinstance(row[name], str):
            return Reject(line, row_id, str(path), name, f"expected a string, got {type(row[name]).__name__}")
        picked[role] = name
    problem = text_problem(row[picked["instruction"]])
    if problem is not None:
        return Reject(line, row_id, str(path), picked["instruction"], problem)
    instruction = row[picked["instruction"]].strip()
    for role in ("source", "edited"):
        problem = _path_problem(row[picked[role]])
        if problem is not None:
            return Reject(line, row_id, str(path), picked[role], problem)
    root = path.parent
    return ManifestRow(line, row_id, resolve_path(root, row[picked["source"]]), instruction,
                       resolve_path(root, row[picked["edited"]]), row, picked["source"], picked["edited"],
                       picked["instruction"])


# ---- what is already done -------------------------------------------------------------------------------
def _last_newline_before(f: Any, end: int) -> int:
    """Offset just past the last b"\\n" before ``end`` (0 if none), searching backwards in 64 KiB steps."""
    pos = end
    while pos > 0:
        start = max(0, pos - (1 << 16))
        f.seek(start)
        cut = f.read(pos - start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        pos = start
    return 0


def repair_jsonl(path: Path) -> int:
    """Cut a last line left incomplete by a crash (no newline, or not valid JSON); returns bytes removed."""
    if not path.is_file() or path.stat().st_size == 0:
        return 0
    with path.open("rb+") as f:
        size = f.seek(0, 2)
        f.seek(size - 1)
        ends_with_newline = f.read(1) == b"\n"
        body_end = size - 1 if ends_with_newline else size
        line_start = _last_newline_before(f, body_end)
        if ends_with_newline:
            f.seek(line_start)
            try:
                json.loads(f.read(size - line_start))
                return 0
            except json.JSONDecodeError:
                pass
        f.truncate(line_start)
        return size - line_start


def _lines_of(path: Path) -> Iterator[int]:
    if not path.is_file():
        return
    with path.open() as f:
        for lineno, text in enumerate(f, start=1):
            if text.strip():
                try:
                    yield int(json.loads(text)["line"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                    raise DataError(path, f"not a curation output row ({err})", line=lineno) from err


class DoneLines:
    """Manifest lines already in scores.jsonl / rejects.jsonl, kept as merged intervals (a run that was never
    interrupted is one interval; each crash adds at most one batch of stragglers)."""

    def __init__(self, out_dir: Path) -> None:
        import heapq

        self.intervals: list[list[int]] = []
        self.count = 0
        for line in heapq.merge(_lines_of(out_dir / SCORES), _lines_of(out_dir / REJECTS)):
            self.count += 1
            if self.intervals and line <= self.intervals[-1][1]:
                raise DataError(out_dir, f"manifest line {line} appears twice in the outputs (or out of order)")
            if self.intervals and line == self.intervals[-1][1] + 1:
                self.intervals[-1][1] = line
            else:
                self.intervals.append([line, line])
        self._i = 0

    def contains(self, line: int) -> bool:
        """Membership for lines asked in increasing order (one pass)."""
        while self._i < len(self.intervals) and self.intervals[self._i][1] < line:
            self._i += 1
        return self._i < len(self.intervals) and self.intervals[self._i][0] <= line


# ---- scoring --------------------------------------------------------------------------------------------
def _to_reject(err: DataError, row: ManifestRow) -> Reject:
    return Reject(row.line, row.id, err.path, err.field, err.reason)


def _load(row: ManifestRow, manifest: Path, cache: dict[Path, Any]) -> tuple[Any, Any] | Reject:
    try:
        if row.source not in cache:
            cache.clear()  # consecutive rows of one group share the source; keep only the latest
            cache[row.source] = load_image(row.source, manifest=manifest, line=row.line, field=row.source_field)
        edited = load_image(row.edited, manifest=manifest, line=row.line, field=row.edited_field)
    except DataError as err:
        return _to_reject(err, row)
    return cache[row.source], edited


def _groups(batch: list[tuple[ManifestRow, Any, Any]]) -> list[tuple[Any, str, list[Any]]]:
    """Consecutive rows with the same source file and instruction become one shared-prefix group."""
    groups: list[tuple[Any, str, list[Any]]] = []
    keys: list[tuple[Path, str]] = []
    for row, src, edited in batch:
        key = (row.source, row.instruction)
        if keys and keys[-1] == key:
            groups[-1][2].append(edited)
        else:
            keys.append(key)
            groups.append((src, row.instruction, [edited]))
    return groups


def reward_dict(scored: Any) -> dict[str, Any]:
    """The JSON form of a ScoredEdit."""
    return {"mu": {k: float(v) for k, v in scored.mu.items()}, "sigma": {k: float(v) for k, v in scored.sigma.items()},
            "score": float(scored.score), "score_sigma": float(scored.score_sigma)}


# Exceptions a reward client raises for the input it was given (the processor, the tokenizer, a tensor op);
# anything else (a lost service, KeyboardInterrupt) stops the run, to be resumed.
ROW_ERRORS = (ValueError, TypeError, IndexError, KeyError, ArithmeticError, RuntimeError)


def _failed_field(row: ManifestRow, message: str) -> str:
    """The row field a reward-model error is about (its message starts with the role), else ``<reward>``."""
    role = message.split(":", 1)[0].strip()
    return {"source": row.source_field, "edited": row.edited_field, "instruction": row.instruction_field}.get(role, "<reward>")


def _score_isolating(client: Any, batch: list[tuple[ManifestRow, Any, Any]]) -> list[Any]:
    """One result per row: a ScoredEdit, or the exception that scoring this row alone raised (a failing batch is
    halved until the failing rows are alone)."""
    try:
        results = [s for group in client.score_groups(_groups(batch)) for s in group]
    except ROW_ERRORS as err:
        if len(batch) == 1:
            return [err]
        mid = len(batch) // 2
        return _score_isolating(client, batch[:mid]) + _score_isolating(client, batch[mid:])
    if len(results) != len(batch):
        raise RuntimeError(f"reward client returned {len(results)} scores for {len(batch)} edits")
    return results


def _score_batch(client: Any, batch: list[tuple[ManifestRow, Any, Any]], manifest: Path,
                 canary: list[tuple[ManifestRow, Any, Any]]) -> list[dict[str, Any]]:
    """Score one batch; returns output rows in line order, each either a score row or a reject row.

    When every row fails, it may be no row's fault (a lost device): ``canary``, a row this run scored before, is
    scored again, and if it fails too the error is raised (the run stops, to be resumed) instead of rejecting
    every row. Before any row has been scored, a batch whose rows all fail with one identical error stops too."""
    results = _score_isolating(client, batch)
    errors = [r for r in results if isinstance(r, Exception)]
    if errors and len(errors) == len(batch):
        if canary:
            if isinstance(_score_isolating(client, canary)[0], Exception):
                raise errors[0]
        elif len(batch) > 1 and len({f"{type(e).__name__}: {e}" for e in errors}) == 1:
            raise errors[0]
    out = []
    for item, scored in zip(batch, results):
        row = item[0]
        if isinstance(scored, Exception):
            message = f"{type(scored).__name__}: {scored}"
            out.append(Reject(row.line, row.id, str(manifest), "<reward>", f"reward model failed: {message}").to_dict())
            continue
        canary[:] = [item]
        if scored.error is not None:
            out.append(Reject(row.line, row.id, str(manifest), _failed_field(row, scored.error),
                              f"reward model: {scored.error}").to_dict())
        elif not (math.isfinite(scored.score) and math.isfinite(scored.score_sigma)):
            out.append(Reject(row.line, row.id, str(manifest), "<reward>", "reward model: non-finite score").to_dict())
        else:
            out.append({"id": row.id, "line": row.line, "row": row.row, "reward": reward_dict(scored)})
    return out


class _Writer:
    """Appends score and reject rows, flushing after each batch so a kill loses at most the batch in flight."""

    def __init__(self, out_dir: Path) -> None:
        self.scores = (out_dir / SCORES).open("a")
        self.rejects = (out_dir / REJECTS).open("a")
        self.n_scored = self.n_rejected = 0

    def write(self, rows: list[dict[str, Any]]) -> None:
        scored = [r for r in rows if "reward" in r]
        rejected = [r for r in rows if "reward" not in r]
        if rejected:
            self.rejects.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in rejected))
            self.rejects.flush()
        if scored:
            self.scores.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in scored))
            self.scores.flush()
        self.n_scored += len(scored)
        self.n_rejected += len(rejected)

    def close(self) -> None:
        self.scores.close()
        self.rejects.close()


def score_dataset(cfg: CurateConfig, client: Any) -> dict[str, Any]:
    """Score every row of ``cfg.input`` not yet in ``cfg.out``; returns counts and timing of this call."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = manifest_path(cfg.input, cfg.input_format)
    repaired = repair_jsonl(out / SCORES) + repair_jsonl(out / REJECTS)
    done = DoneLines(out)
    total = count_rows(manifest)
    writer = _Writer(out)
    bar = tqdm(total=total, initial=done.count, desc="curate: scoring", unit="row", disable=not cfg.progress,
               smoothing=0.05)
    start = time.perf_counter()
    batch: list[tuple[ManifestRow, Any, Any]] = []
    pending: list[dict[str, Any]] = []  # rejects found while the batch fills, written with it in line order
    cache: dict[Path, Any] = {}
    canary: list[tuple[ManifestRow, Any, Any]] = []  # the last row scored, to tell a bad row from a lost device
    skipped = 0

    def flush() -> None:
        rows = pending + (_score_batch(client, batch, manifest, canary) if batch else [])
        writer.write(sorted(rows, key=lambda r: r["line"]))
        bar.update(len(rows))
        batch.clear()
        pending.clear()

    try:
        for line, text in _raw_lines(manifest):
            if done.contains(line):
                skipped += 1
                continue
            parsed = parse_row(manifest, line, text, cfg.input_format)
            if isinstance(parsed, ManifestRow):
                loaded = _load(parsed, manifest, cache)
                parsed = loaded if isinstance(loaded, Reject) else parsed
                if not isinstance(loaded, Reject):
                    batch.append((parsed, *loaded))
            if isinstance(parsed, Reject):
                pending.append(parsed.to_dict())
            if len(batch) >= cfg.batch_size or len(pending) >= cfg.batch_size:
                flush()
        flush()
    finally:
        writer.close()
        bar.close()
    if skipped != done.count:
        raise DataError(out, f"the outputs hold {done.count} rows but only {skipped} of them match lines of "
                             f"{manifest}: they come from another dataset (use a fresh --out)")
    seconds = time.perf_counter() - start
    new = writer.n_scored + writer.n_rejected
    return {"manifest": str(manifest), "rows": total, "already_done": skipped, "scored_now": writer.n_scored,
            "rejected_now": writer.n_rejected, "seconds": seconds, "rows_per_s": new / seconds if seconds > 0 else 0.0,
            "repaired_bytes": repaired}


def iter_scores(out_dir: str | Path) -> Iterator[dict[str, Any]]:
    """Stream the score rows of a run (``scores.jsonl``)."""
    path = Path(out_dir) / SCORES
    if not path.is_file():
        return
    with path.open() as f:
        for text in f:
            if text.strip():
                yield json.loads(text)
