"""Dataset I/O shared by every package: manifests (JSONL), images, and errors that say where input is bad.

A dataset is a folder with images and a ``manifest.jsonl``; image paths inside a manifest are relative
to the manifest's folder (absolute paths are kept as they are).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from PIL import Image, UnidentifiedImageError


class DataError(ValueError):
    """Bad input data; the message names the file, and where known the line and field."""

    def __init__(self, path: str | Path, message: str, *, line: int | None = None, field: str | None = None):
        self.path, self.line, self.field = str(path), line, field
        where = self.path + (f":{line}" if line is not None else "")
        what = f" field {field!r}:" if field else ""
        super().__init__(f"{where}:{what} {message}")


def iter_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, row)`` for each non-blank line; malformed JSON or a missing field is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "manifest not found")
    with path.open() as f:
        for lineno, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as err:
                raise DataError(path, f"malformed JSON ({err.msg} at column {err.colno})", line=lineno) from err
            if not isinstance(row, dict):
                raise DataError(path, f"expected a JSON object, got {type(row).__name__}", line=lineno)
            for name in required:
                if name not in row:
                    raise DataError(path, "missing required field", line=lineno, field=name)
            yield lineno, row


def read_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """All rows of a JSONL file (see ``iter_jsonl``)."""
    return [row for _, row in iter_jsonl(path, required)]


def write_jsonl(path: str | Path, rows: list[dict[str, Any]] | Iterator[dict[str, Any]]) -> Path:
    """Write rows as JSON lines with stable key order (so equal inputs give byte-identical files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    return path


def resolve_path(root: str | Path, rel: str) -> Path:
    """An image path from a manifest, resolved against the manifest's folder."""
    p = Path(rel)
    return p if p.is_absolute() else Path(root) / p


def load_image(path: str | Path, *, manifest: str | Path | None = None, line: int | None = None,
               field: str | None = None) -> Image.Image:
    """Open an image as RGB; an unreadable file is a DataError naming the manifest line and field when given."""
    path = Path(path)
    where = manifest if manifest is not None else path
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError as err:
        raise DataError(where, f"image not found: {path}", line=line, field=field) from err
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(where, f"cannot decode image {path}: {err}", line=line, field=field) from err
