"""The configuration reference (``docs/configuration.md``), generated from the config dataclasses' field comments.

Every config field carries its documentation as the comment on its line (``lr: float = 1e-4  # AdamW lr``, or the
comment lines just above it); this module walks each command's config tree and writes one table per section, so the
reference cannot drift from the code (``tests/editrl/test_config_reference.py`` regenerates and compares it).
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import tokenize
from pathlib import Path
from typing import Any, get_type_hints

# (command, "module:Class") for every config a command loads with --config
COMMANDS: tuple[tuple[str, str], ...] = (
    ("editrl world generate", "editworld.config:WorldConfig"),
    ("editrl world editor-samples", "editworld.config:EditorSampleConfig"),
    ("editrl reward train", "reward.train.config:RewardTrainConfig"),
    ("editrl reward pretrain", "reward.train.pretrain_config:PretrainConfig"),
    ("editrl reward ablate", "reward.eval.ablate:AblationConfig"),
    ("editrl reward serve", "reward.serve.config:ServiceConfig"),
    ("editrl policy sft", "policy.sft_config:SFTConfig"),
    ("editrl policy grpo", "policy.config:GRPOConfig"),
    ("editrl policy dpo", "policy.config:DPOConfig"),
    ("editrl curate", "curation.config:CurateConfig"),
    ("editrl curate --reproduce-table3", "curation.table3:Table3Config"),
)


def _load(target: str) -> type:
    import importlib

    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` from the class body's source: the trailing comment, else the comment lines above it."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        pending: list[str] = []
        line_comment: dict[int, str] = {}
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                line_comment[tok.start[0]] = tok.string.lstrip("#").strip()
        names = {f.name for f in dataclasses.fields(klass)}
        for i, line in enumerate(source.splitlines(), start=1):
            stripped = line.strip()
            if stripped.startswith("#"):
                pending.append(line_comment.get(i, ""))
                continue
            name = stripped.split(":", 1)[0].strip()
            if ":" in stripped and name in names and not stripped.startswith(("def ", "class ", "@")):
                text = line_comment.get(i) or " ".join(pending)
                if text or name not in out:
                    out[name] = text
            pending = []
    return out


def _doc(cls: type) -> str:
    """A class's own docstring (not the signature dataclasses put there when it has none)."""
    doc = (cls.__doc__ or "").strip()
    return "" if doc.startswith(cls.__name__ + "(") else doc.splitlines()[0] if doc else ""


def _type_name(tp: Any) -> str:
    text = getattr(tp, "__name__", None) if isinstance(tp, type) else None
    return text or str(tp).replace("typing.", "")


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
        return "" if dataclasses.is_dataclass(value) else repr(value)
    return "(required)"


def section_rows(cls: type, prefix: str = "") -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    """``[(section, [(key, type, default, doc), ...]), ...]`` for ``cls`` and every nested section."""
    hints = get_type_hints(cls)
    comments = field_comments(cls)
    rows, nested = [], []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            nested.extend(section_rows(tp, f"{prefix}{f.name}."))
            rows.append((f"{prefix}{f.name}", "section", "", comments.get(f.name, "") or _doc(tp)))
        else:
            rows.append((f"{prefix}{f.name}", _type_name(tp), _default(f), comments.get(f.name, "")))
    title = prefix.rstrip(".") or "(top level)"
    return [(title, rows), *nested]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    """The whole reference as Markdown."""
    out = ["# Configuration reference", "",
           "Generated from the config dataclasses by `python -m editrl.config_reference` (do not edit by hand).",
           "Every command that takes `--config FILE` also takes dotted overrides (`train.lr=1e-5`); a preset may",
           "start from another with `extends: other.yaml`. An unknown key, a wrong type or a duplicate YAML key is an",
           "error naming the key and where it came from.", ""]
    for command, target in COMMANDS:
        cls = _load(target)
        out += [f"## `{command}` ({target.replace(':', '.')})", "", _doc(cls), ""]
        for title, rows in section_rows(cls):
            out += [f"### `{title}`", "", "| key | type | default | meaning |", "|---|---|---|---|"]
            out += [f"| `{k}` | {_cell(t)} | {_cell(d)} | {_cell(doc)} |" for k, t, d, doc in rows]
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def write(path: str | Path = "docs/configuration.md") -> Path:
    """Regenerate the reference file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render())
    return path


if __name__ == "__main__":
    print(write())
