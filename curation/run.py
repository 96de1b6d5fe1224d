"""One curation run: score a dataset with a reward (resuming), then select and write the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from editrl.config import ConfigError


def run_curation(cfg: Any, client: Any = None) -> dict[str, Any]:
    """Score (resuming) and select; returns the summary. ``client`` overrides ``cfg.reward`` (tests, table 3)."""
    from curation.report import write_outputs
    from curation.scoring import manifest_path, score_dataset
    from editrl.config import save_config

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    _check_same_input(cfg, out)
    save_config(cfg, out / "config.yaml")
    if client is None:
        from reward.serve.client import make_reward_client

        client = make_reward_client(cfg.reward, device=cfg.device)
    timing = score_dataset(cfg, client)
    summary = write_outputs(out, manifest_path(cfg.input, cfg.input_format), cfg.selection, cfg.grid_k)
    summary["last_call"] = timing
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    return summary


def _check_same_input(cfg: Any, out: Path) -> None:
    """A resumed run must read the same dataset (its scores are keyed by manifest line)."""
    saved = out / "config.yaml"
    if not saved.is_file():
        return
    import yaml

    previous = (yaml.safe_load(saved.read_text()) or {}).get("input")
    if previous and Path(previous).resolve() != Path(cfg.input).resolve():
        raise ConfigError(f"{out} holds scores of {previous}, not {cfg.input}: use another --out")
