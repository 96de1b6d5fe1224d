"""The one metrics sink: every run appends JSON lines to ``metrics.jsonl``; wandb mirrors them when configured.

wandb is used only when a project name is given *and* ``WANDB_MODE`` is not ``disabled``; it is
imported lazily so that runs without it pay nothing.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any


class MetricsSink:
    """Append-only metrics log for one run (JSONL always, wandb optionally)."""

    def __init__(
        self,
        out_dir: str | Path,
        *,
        wandb_project: str | None = None,
        run_name: str | None = None,
        config: dict[str, Any] | None = None,
        filename: str = "metrics.jsonl",
    ) -> None:
        self.path = Path(out_dir) / filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", buffering=1)
        self._wandb = None
        if wandb_project and os.environ.get("WANDB_MODE", "").lower() != "disabled":
            import wandb

            self._wandb = wandb.init(project=wandb_project, name=run_name, config=config, dir=str(self.path.parent))

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Record one row of scalar metrics (non-finite floats are written as null)."""
        row = {"time": round(time.time(), 3)}
        if step is not None:
            row["step"] = int(step)
        row.update({k: _jsonable(v) for k, v in metrics.items()})
        self._file.write(json.dumps(row) + "\n")
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if k not in ("time", "step")}, step=step)

    def close(self) -> None:
        self._file.close()
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    def __enter__(self) -> "MetricsSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Load a ``metrics.jsonl`` back (for reports and resume checks)."""
    with Path(path).open() as f:
        return [json.loads(line) for line in f if line.strip()]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
