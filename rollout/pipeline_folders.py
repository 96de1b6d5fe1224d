"""Local diffusers checkpoint folders: read ``model_index.json`` and check a pipeline's component folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from editrl.io import DataError


def read_model_index(path: str | Path) -> dict[str, Any]:
    """The ``model_index.json`` of a local diffusers checkpoint folder; a clear DataError when it is not one."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(folder, "editor checkpoint must be a local folder (hub ids are not fetched here)")
    index = folder / "model_index.json"
    if not index.is_file():
        raise DataError(index, "not a diffusers pipeline folder: model_index.json is missing")
    try:
        data = json.loads(index.read_text())
    except json.JSONDecodeError as err:
        raise DataError(index, f"malformed JSON ({err.msg} at line {err.lineno})") from err
    if not isinstance(data, dict) or "_class_name" not in data:
        raise DataError(index, "missing the pipeline class name", field="_class_name")
    return data


def check_pipeline_folder(path: str | Path, expected_class: str, components: tuple[str, ...]) -> Path:
    """Validate that ``path`` holds a ``expected_class`` checkpoint with the given component folders."""
    folder = Path(path)
    data = read_model_index(folder)
    if data["_class_name"] != expected_class:
        raise DataError(folder / "model_index.json",
                        f"expected a {expected_class} checkpoint, found {data['_class_name']}", field="_class_name")
    for name in components:
        if not (folder / name).is_dir():
            raise DataError(folder, f"component folder {name!r} is missing (listed in model_index.json: "
                                    f"{name in data})")
    return folder
