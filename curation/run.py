"""One curation run: score a dataset with a reward (resuming), then select and write the report.

Resume is only safe with the same inputs (scores are keyed by manifest line), so a run stores a fingerprint
of what it scores with (``fingerprint.json``: the manifest's content hash, the reward checkpoint's, the input
format, the input limits) and a rerun into the same folder refuses a changed input, naming what changed;
``restart=True`` (``editrl curate --restart``) discards the old outputs instead. Rows appended to the end of
the manifest are fine: the old content is a prefix of the new, and only the new rows are scored. The selection
is recorded too but may change freely: the report pass re-selects from every stored score.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from editrl.config import ConfigError
from editrl.fingerprint import FINGERPRINT, file_digest, path_fingerprint, short, write_fingerprint

OUTPUTS = ("scores.jsonl", "rejects.jsonl", "kept.jsonl", "all_scored.jsonl", "summary.json", "histograms.png",
           "extremes.png", FINGERPRINT)


def run_curation(cfg: Any, client: Any = None, *, restart: bool = False) -> dict[str, Any]:
    """Score (resuming) and select; returns the summary. ``client`` overrides ``cfg.reward`` (tests, table 3);
    ``restart`` deletes the outputs of an earlier run in ``cfg.out`` first."""
    from curation.report import write_outputs
    from curation.scoring import manifest_path, score_dataset
    from editrl.config import save_config
    from editrl.io import set_input_limits, write_text_atomic

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    set_input_limits(cfg.limits)
    if restart:
        for name in OUTPUTS:
            (out / name).unlink(missing_ok=True)
    manifest = manifest_path(cfg.input, cfg.input_format)
    fingerprint = input_fingerprint(cfg, manifest, client)
    notes = check_fingerprint(out, fingerprint)
    save_config(cfg, out / "config.yaml")
    write_fingerprint(out, fingerprint)
    if client is None:
        from reward.serve.client import make_reward_client

        client = make_reward_client(cfg.reward, device=cfg.device)
    timing = score_dataset(cfg, client)
    summary = write_outputs(out, manifest, cfg.selection, cfg.grid_k)
    summary["last_call"] = timing
    summary["notes"] = notes
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1, sort_keys=True))
    return summary


# ---- fingerprints ---------------------------------------------------------------------------------------
def reward_fingerprint(spec: Any, client: Any = None) -> str:
    """What identifies the reward: its checkpoint folder's content, a ray:// service name, or the client's class;
    for an ``ensemble:`` spec, each member's, joined by ``+``."""
    from reward.serve.ensemble import member_specs

    if client is not None:
        return f"client:{type(client).__module__}.{type(client).__qualname__}"
    return "+".join(path_fingerprint(m, recursive=False) if Path(m).is_dir() else m for m in member_specs(str(spec)))


def input_fingerprint(cfg: Any, manifest: Path, client: Any = None) -> dict[str, Any]:
    """The inputs a curation run's scores depend on (and the selection, recorded for the report)."""
    return {"manifest": {"path": str(manifest.resolve()), "bytes": manifest.stat().st_size,
                         "sha256": file_digest(manifest)},
            "input_format": cfg.input_format, "reward": reward_fingerprint(cfg.reward, client),
            "limits": dataclasses.asdict(cfg.limits), "selection": dataclasses.asdict(cfg.selection)}


def check_fingerprint(out: Path, new: dict[str, Any]) -> list[str]:
    """Refuse to resume ``out`` with changed inputs (a ConfigError naming them); returns notes on allowed changes."""
    path = out / FINGERPRINT
    has_outputs = any((out / name).is_file() and (out / name).stat().st_size for name in OUTPUTS[:2])
    if not path.is_file():
        return ["resumed outputs written before inputs were fingerprinted: not checked"] if has_outputs else []
    old = json.loads(path.read_text())
    if not has_outputs:
        return []
    changed = []
    m_old, m_new = old["manifest"], new["manifest"]
    if m_old["sha256"] != m_new["sha256"]:
        appended = (m_new["bytes"] > m_old["bytes"]
                    and file_digest(Path(m_new["path"]), m_old["bytes"]) == m_old["sha256"])
        if not appended:
            changed.append(f"the manifest {m_new['path']} changed since these scores were written "
                           f"(sha256 {m_old['sha256'][:12]}... -> {m_new['sha256'][:12]}..., "
                           f"{m_old['bytes']:,} -> {m_new['bytes']:,} bytes"
                           + ("" if m_old["path"] == m_new["path"] else f"; it was {m_old['path']}") + ")")
    for key, what in (("reward", "the reward model"), ("input_format", "input_format"), ("limits", "the input limits")):
        if old.get(key) != new.get(key):
            changed.append(f"{what} changed ({short(old.get(key))} -> {short(new.get(key))})")
    if changed:
        raise ConfigError(f"{out} holds scores from other inputs: " + "; ".join(changed)
                          + ". Rerun with --restart to score from scratch, or use another --out.")
    notes = []
    if m_old["sha256"] != m_new["sha256"]:
        notes.append(f"manifest grew from {m_old['bytes']:,} to {m_new['bytes']:,} bytes: the new rows are scored")
    if old.get("selection") != new.get("selection"):
        diff = {k: (old["selection"].get(k), v) for k, v in new["selection"].items() if old["selection"].get(k) != v}
        notes.append("selection changed since the last call, re-selected from the stored scores: "
                     + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in diff.items()))
    return notes
