"""Typed run configuration: YAML presets -> dataclasses, dotted command-line overrides, strict checks.

Every config is a (nested) dataclass owned by the package it configures (``reward/model/config.py``, ...).
``load_config`` is the one way a command turns ``--config FILE`` plus ``key.sub=value`` overrides into
an instance; an unknown key (with the closest valid one), a value of the wrong type or a duplicate YAML key is a
``ConfigError`` naming the dotted key and where the value came from (the file, or the command line). A preset may
start from another: ``extends: other.yaml`` (relative to the preset's folder) is read first and the preset's own
values are merged over it, section by section (``extends`` chains; a loop is an error).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override does not fit the dataclass it configures."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that repeats a key (YAML itself would keep the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"{self.name}:{key_node.start_mark.line + 1}: duplicate key {key!r} "
                                  f"(first at line {seen[key] + 1})")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict[str, Any]:
    """One YAML mapping from ``path`` (duplicate keys and a non-mapping top level are errors)."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loader = _UniqueKeyLoader(path.read_text())
        loader.name = str(path)
        try:
            loaded = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
    return loaded


def _read_preset(path: Path, origins: dict[str, str], chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A preset with its ``extends:`` chain resolved (the base preset's values first, this file's on top)."""
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"{path}: extends: chain loops ({' -> '.join(str(p) for p in (*chain, path))})")
    raw = read_yaml(path)
    base = raw.pop("extends", None)
    merged: dict[str, Any] = {}
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{path}: extends: expected the path of the preset this one extends, got {base!r}")
        merged = _read_preset(path.parent / base, origins, (*chain, path))
    _merge(merged, raw, origins, str(path), "")
    return merged


def _merge(into: dict[str, Any], new: dict[str, Any], origins: dict[str, str], source: str, prefix: str) -> None:
    for key, value in new.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, origins, source, dotted + ".")
        else:
            into[key] = value
            origins[dotted] = source


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Build ``cls`` from an optional YAML preset (with its ``extends:`` chain) and ``key.sub=value`` overrides
    (applied in order). Errors name where the offending value came from: the file, or the command line."""
    origins: dict[str, str] = {}
    raw = _read_preset(Path(path), origins) if path is not None else {}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"command line: override {item!r}: expected key.sub=value")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"command line: override {item!r}: the value is not valid YAML ({err})") from err
        _set_dotted(raw, key, parsed, item)
        origins[key] = f"command line ({item!r})"
    return _build(cls, raw, prefix="", origins=origins)


def _source(origins: dict[str, str], key: str) -> str:
    """Where the value at dotted ``key`` (or the nearest section above it) came from."""
    while key:
        if key in origins:
            return origins[key]
        key = key.rpartition(".")[0]
    return "<defaults>"


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-dict view of a config dataclass (for saving, logging and wandb)."""
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML beside a run's outputs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path


def _set_dotted(raw: dict[str, Any], key: str, value: Any, item: str) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"command line: override {item!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def _build(cls: type[T], raw: Any, prefix: str, origins: dict[str, str]) -> T:
    if not isinstance(raw, dict):
        where = _source(origins, prefix.rstrip("."))
        raise ConfigError(f"{where}: {prefix.rstrip('.') or '<root>'} must be a mapping, got {raw!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in sorted(set(raw) - set(fields), key=str):
        close = difflib.get_close_matches(str(key), list(fields), n=1)
        hint = f"; did you mean {prefix}{close[0]}?" if close else ""
        raise ConfigError(f"{_source(origins, f'{prefix}{key}')}: unknown config key {prefix}{key}{hint} "
                          f"(valid keys here: {', '.join(sorted(fields))})")
    kwargs = {name: _coerce(hints[name], value, f"{prefix}{name}", origins) for name, value in raw.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{_source(origins, prefix.rstrip('.'))}: {prefix.rstrip('.') or '<root>'}: {err}") from err


def _coerce(tp: Any, value: Any, key: str, origins: dict[str, str]) -> Any:
    source = _source(origins, key.split("[")[0])
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, prefix=key + ".", origins=origins)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key, origins)
            except ConfigError:
                pass
        raise ConfigError(f"{source}: {key}: {value!r} does not match {tp}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{source}: {key}: {value!r} is not one of {list(get_args(tp))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key}: expected a list, got {value!r}")
        args = get_args(tp)
        inner = args[0] if args else Any
        items = [_coerce(inner, v, f"{key}[{i}]", origins) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "2e-5" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{source}: {key}: expected {tp.__name__}, got {value!r}")
    return value


__all__ = ["ConfigError", "load_config", "save_config", "config_to_dict", "read_yaml"]
