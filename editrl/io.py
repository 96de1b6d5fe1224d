"""Dataset I/O shared by every package: manifests (JSONL), images, input limits, and errors that say where input is bad.

A dataset is a folder with images and a ``manifest.jsonl``; image paths inside a manifest are relative
to the manifest's folder (absolute paths are kept as they are). Manifests are read as bytes and decoded
line by line, so one undecodable line is one bad row, not an unreadable file.

``InputLimits`` bounds what one row may cost (image pixels and aspect ratio, instruction characters and
tokens); every limit is checked before anything large is allocated (an image's size is read from its
header before it is decoded). Defaults are the dataclass's; a user changes them with the environment
variables in ``LIMIT_ENV`` (any command) or, for a run with a config, its ``limits:`` section.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Iterator

from PIL import Image, UnidentifiedImageError

from editrl.config import ConfigError


class DataError(ValueError):
    """Bad input data; the message names the file, and where known the line and field."""

    def __init__(self, path: str | Path, message: str, *, line: int | None = None, field: str | None = None):
        self.path, self.line, self.field, self.reason = str(path), line, field, message
        where = self.path + (f":{line}" if line is not None else "")
        what = f" field {field!r}:" if field else ""
        super().__init__(f"{where}:{what} {message}")


# ---- limits -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputLimits:
    """The largest input one row may be; anything larger is rejected with its reason, before allocation."""

    max_image_pixels: int = 1 << 25  # width * height (33.5 MP; 8000x8000 is over); PIL's own bomb guard is 179 MP
    max_aspect_ratio: float = 50.0  # longer side / shorter side (the Qwen-VL processors fail above 200)
    max_instruction_chars: int = 2000  # characters of an instruction after stripping
    max_instruction_tokens: int = 1024  # tokenizer tokens of an instruction (checked where a tokenizer is at hand)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1:
                raise ConfigError(f"limits.{f.name}: must be a number >= 1, got {value!r}")


LIMIT_ENV = {f.name: "EDITRL_" + f.name.upper() for f in fields(InputLimits)}
_current: InputLimits | None = None


def input_limits() -> InputLimits:
    """The limits in force: those set by ``set_input_limits``, else the defaults with ``EDITRL_MAX_*`` applied."""
    if _current is not None:
        return _current
    changes: dict[str, Any] = {}
    for name, var in LIMIT_ENV.items():
        text = os.environ.get(var)
        if text is None or not text.strip():
            continue
        try:
            changes[name] = int(text) if name != "max_aspect_ratio" else float(text)
        except ValueError:
            raise ConfigError(f"environment variable {var}={text!r}: expected a number") from None
    return replace(InputLimits(), **changes)


def set_input_limits(limits: InputLimits | None) -> None:
    """Make ``limits`` the ones in force in this process (None: back to defaults and environment)."""
    global _current
    _current = limits
    if limits is not None:  # exported so that worker processes started later (Ray replicas) apply them too
        for name, var in LIMIT_ENV.items():
            os.environ[var] = str(getattr(limits, name))


def image_size_problem(width: int, height: int, limits: InputLimits | None = None) -> str | None:
    """Why an image of ``width`` x ``height`` is not accepted, or None if it is."""
    limits = limits or input_limits()
    if width < 1 or height < 1:
        return f"image is {width}x{height} pixels: empty"
    if width * height > limits.max_image_pixels:
        return (f"image is {width}x{height} = {width * height:,} pixels, more than max_image_pixels = "
                f"{limits.max_image_pixels:,} (raise it with {LIMIT_ENV['max_image_pixels']} or limits.max_image_pixels)")
    ratio = max(width, height) / min(width, height)
    if ratio > limits.max_aspect_ratio:
        return (f"image is {width}x{height} pixels: aspect ratio {ratio:.1f} is above max_aspect_ratio = "
                f"{limits.max_aspect_ratio:g} ({LIMIT_ENV['max_aspect_ratio']} or limits.max_aspect_ratio)")
    return None


def text_problem(value: Any, limits: InputLimits | None = None) -> str | None:
    """Why ``value`` is not an acceptable instruction text (type, empty, not Unicode, too long), or None."""
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__}"
    text = value.strip()
    if not text:
        return "empty instruction"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return f"not valid Unicode text (a lone surrogate {text[err.start]!r} at character {err.start + 1})"
    if "\x00" in text:
        return f"contains a NUL character (at character {text.index(chr(0)) + 1})"
    limits = limits or input_limits()
    if len(text) > limits.max_instruction_chars:
        return (f"instruction has {len(text):,} characters, more than max_instruction_chars = "
                f"{limits.max_instruction_chars:,} ({LIMIT_ENV['max_instruction_chars']} or limits.max_instruction_chars)")
    return None


# ---- manifests --------------------------------------------------------------------------------------
def decode_line(raw: bytes, lineno: int) -> str:
    """One manifest line as text (a leading byte-order mark dropped); a ValueError names the first non-UTF-8 byte."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"not UTF-8 text (byte 0x{raw[err.start]:02x} at column {err.start + 1})") from None
    return text[1:] if lineno == 1 and text.startswith("\ufeff") else text


def iter_lines(path: str | Path) -> Iterator[tuple[int, str | DataError]]:
    """``(line number, text)`` of each non-blank line, read as bytes; an undecodable line gives a DataError instead."""
    path = Path(path)
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                yield lineno, decode_line(raw, lineno)
            except ValueError as err:
                yield lineno, DataError(path, str(err), line=lineno, field="<line>")


def parse_json_row(path: str | Path, lineno: int, text: str) -> dict[str, Any]:
    """One JSONL line as a JSON object; anything else is a DataError naming the line (field ``<line>``)."""
    try:
        row = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(path, f"malformed JSON ({err.msg} at column {err.colno})", line=lineno, field="<line>") from err
    except RecursionError:
        raise DataError(path, "malformed JSON (nested too deeply)", line=lineno, field="<line>") from None
    if not isinstance(row, dict):
        raise DataError(path, f"expected a JSON object, got {type(row).__name__}", line=lineno, field="<line>")
    return row


def iter_jsonl(path: str | Path, required: tuple[str, ...] = (),
               rejects: list[DataError] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, row)`` for each non-blank line; a line that is not UTF-8, not a JSON object or lacks
    a required field is a DataError — raised, or, when ``rejects`` is a list, appended to it and skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "manifest not found")
    for lineno, text in iter_lines(path):
        try:
            if isinstance(text, DataError):
                raise text
            row = parse_json_row(path, lineno, text)
            for name in required:
                if name not in row:
                    raise DataError(path, "missing required field", line=lineno, field=name)
        except DataError as err:
            if rejects is None:
                raise
            rejects.append(err)
            continue
        yield lineno, row


def warn_rejects(path: str | Path, rejects: list[DataError], kept: int, what: str = "rows", shown: int = 10) -> None:
    """Tell the user on stderr which rows of ``path`` a loader skipped (file:line, field, reason; the first
    ``shown`` of them) and how many it kept; nothing when there are none."""
    import sys

    if not rejects:
        return
    print(f"{path}: {len(rejects)} {what} rejected, {kept} kept:", file=sys.stderr)
    for err in rejects[:shown]:
        print(f"  reject {err}", file=sys.stderr)
    if len(rejects) > shown:
        print(f"  ... and {len(rejects) - shown} more", file=sys.stderr)


def read_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """All rows of a JSONL file (see ``iter_jsonl``)."""
    return [row for _, row in iter_jsonl(path, required)]


def temp_path(path: str | Path) -> Path:
    """A sibling of ``path`` to write first and ``os.replace`` onto it (readers never see a half-written file)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a temporary sibling, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_jsonl(path: str | Path, rows: list[dict[str, Any]] | Iterator[dict[str, Any]]) -> Path:
    """Write rows as JSON lines with stable key order (so equal inputs give byte-identical files), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    with tmp.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def resolve_path(root: str | Path, rel: str) -> Path:
    """An image path from a manifest, resolved against the manifest's folder."""
    p = Path(rel)
    return p if p.is_absolute() else Path(root) / p


def load_image(path: str | Path, *, manifest: str | Path | None = None, line: int | None = None,
               field: str | None = None, limits: InputLimits | None = None) -> Image.Image:
    """Open an image as RGB; an unreadable file, or one over the limits (checked from its header, before decoding),
    is a DataError naming the manifest line and field when given."""
    path = Path(path)
    where = manifest if manifest is not None else path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own pixel limit applies below
            with Image.open(path) as im:
                problem = image_size_problem(*im.size, limits)
                if problem is not None:
                    raise DataError(where, f"{problem}: {path}", line=line, field=field)
                return im.convert("RGB")
    except DataError:
        raise
    except FileNotFoundError as err:
        raise DataError(where, f"image not found: {path}", line=line, field=field) from err
    except Image.DecompressionBombError as err:
        raise DataError(where, f"image refused as a decompression bomb ({err}): {path}", line=line, field=field) from err
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(where, f"cannot decode image {path}: {err}", line=line, field=field) from err
    except Exception as err:  # a corrupt file can make a PIL plugin raise anything (SyntaxError, struct.error, ...)
        raise DataError(where, f"cannot decode image {path}: {type(err).__name__}: {err}", line=line,
                        field=field) from err


def load_row_image(manifest: str | Path, line: int, row: dict[str, Any], field: str) -> Image.Image:
    """The image a manifest row names in ``field`` (a path relative to the manifest's folder), or a DataError naming
    manifest:line and the field (not a path, unreadable, over the limits)."""
    value = row[field]
    if not isinstance(value, str):
        raise DataError(manifest, f"expected an image path, got {type(value).__name__}", line=line, field=field)
    return load_image(resolve_path(Path(manifest).parent, value), manifest=manifest, line=line, field=field)
