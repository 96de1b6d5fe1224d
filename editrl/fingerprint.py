"""Fingerprints of a run's inputs, so that a resumed run refuses inputs that changed since it started.

A run folder holds ``fingerprint.json``: content hashes of the files and folders the run reads (a manifest, a
checkpoint) and the settings its results depend on, flattened to dotted keys. ``check_resume`` compares a new
fingerprint with the stored one and raises a ``ConfigError`` naming every changed input and how to start over.
Files up to ``FULL_HASH_BYTES`` are hashed whole; larger ones (multi-GB weights) by size, first and last 4 MiB.
Used by curation (curation.run), online RL (policy.loop) and reward training (reward.train.trainer).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

FINGERPRINT = "fingerprint.json"
FULL_HASH_BYTES = 64 << 20
_SAMPLE = 4 << 20


def file_digest(path: str | Path, limit: int | None = None) -> str:
    """sha256 of a file's first ``limit`` bytes (all of it when None), streamed."""
    h = hashlib.sha256()
    left = limit
    with Path(path).open("rb") as f:
        while left is None or left > 0:
            chunk = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    return h.hexdigest()


def sampled_digest(path: str | Path) -> str:
    """A whole-file hash for small files; size + first and last 4 MiB for large ones (a multi-GB checkpoint)."""
    path = Path(path)
    size = path.stat().st_size
    if size <= FULL_HASH_BYTES:
        return file_digest(path)
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(_SAMPLE))
        f.seek(size - _SAMPLE)
        h.update(f.read())
    return "sampled:" + h.hexdigest()


def path_fingerprint(spec: str | Path, recursive: bool = True) -> str:
    """What identifies ``spec``: a file's (sampled) hash, a folder's files' names and hashes (below it when
    ``recursive``; ``*.tmp`` and hidden files skipped), or the string itself when it names no path (``ray://x``)."""
    path = Path(str(spec))
    if path.is_file():
        return "sha256:" + sampled_digest(path)
    if not path.is_dir():
        return str(spec)
    files = path.rglob("*") if recursive else path.iterdir()
    h = hashlib.sha256()
    for p in sorted(q for q in files if q.is_file() and not q.name.endswith(".tmp")
                    and not any(part.startswith(".") for part in q.relative_to(path).parts)):
        h.update(f"{p.relative_to(path).as_posix()}\0{sampled_digest(p)}\0".encode())
    return "sha256:" + h.hexdigest()


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as ``{"a.b.c": leaf}`` (lists and tuples are leaves, as JSON lists)."""
    if not isinstance(tree, dict):
        return {prefix: list(tree) if isinstance(tree, tuple) else tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def read_fingerprint(folder: str | Path) -> dict[str, Any] | None:
    """The fingerprint stored in ``folder``, or None when there is none."""
    path = Path(folder) / FINGERPRINT
    return json.loads(path.read_text()) if path.is_file() else None


def write_fingerprint(folder: str | Path, fingerprint: dict[str, Any]) -> Path:
    """Store ``fingerprint`` in ``folder`` (atomically)."""
    from editrl.io import write_text_atomic

    return write_text_atomic(Path(folder) / FINGERPRINT, json.dumps(fingerprint, indent=1, sort_keys=True))


def short(value: Any) -> str:
    """A value as at most 60 characters, for messages (hashes are cut to 12 hex digits)."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if text.startswith(("sha256:", "sampled:")):
        return text.split(":", 1)[0] + ":" + text.split(":", 1)[1][:12] + "..."
    return text if len(text) <= 60 else text[:57] + "..."


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One line per key of ``old`` or ``new`` whose value differs: ``key old -> new``."""
    return [f"{key} {short(old.get(key, '<unset>'))} -> {short(new.get(key, '<unset>'))}"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def make_fingerprint(files: dict[str, str | Path | None], settings: dict[str, Any]) -> dict[str, Any]:
    """A fingerprint: ``files`` maps a label ("manifest", "editor") to the path read (None: not used), hashed with
    ``path_fingerprint``; ``settings`` (a config dict, nested or flat) is stored flattened to dotted keys."""
    return {"files": {label: {"path": str(Path(path).resolve() if Path(path).exists() else path),
                              "digest": path_fingerprint(path)}
                      for label, path in files.items() if path is not None},
            "settings": flatten(json.loads(json.dumps(settings, default=str)))}


def check_resume(stored: dict[str, Any] | None, new: dict[str, Any], what: str, how_to_restart: str) -> list[str]:
    """Refuse to resume when ``new`` (from ``make_fingerprint``) differs from the ``stored`` fingerprint.

    ``what`` says what holds the old results ("runs/x holds checkpoints"); ``how_to_restart`` ends the message.
    Returns notes for the log: none, or that an old run without a fingerprint could not be checked."""
    from editrl.config import ConfigError

    if stored is None:
        return [f"{what} written before inputs were fingerprinted: not checked"]
    changed = []
    old_files, new_files = stored.get("files", {}), new.get("files", {})
    for label in sorted(set(old_files) | set(new_files)):
        a, b = old_files.get(label), new_files.get(label)
        if a is None or b is None:
            changed.append(f"the {label} {(a or b)['path']} is {'no longer' if b is None else 'now'} an input")
        elif a["digest"] != b["digest"] or a["path"] != b["path"]:
            changed.append(f"the {label} {b['path']} changed ({short(a['digest'])} -> {short(b['digest'])}"
                           + ("" if a["path"] == b["path"] else f"; it was {a['path']}") + ")")
    changed += changes(stored.get("settings", {}), new.get("settings", {}))
    if changed:
        raise ConfigError(f"{what} from other inputs; changed since: " + "; ".join(changed) + f". {how_to_restart}")
    return []


__all__ = ["FINGERPRINT", "FULL_HASH_BYTES", "file_digest", "sampled_digest", "path_fingerprint", "flatten",
           "read_fingerprint", "write_fingerprint", "short", "changes", "make_fingerprint", "check_resume"]
