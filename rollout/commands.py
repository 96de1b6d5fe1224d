"""Handlers of `editrl` commands that sample editors outside RL (argument parsing lives in editrl/cli.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def editor_samples(args: argparse.Namespace) -> int:
    """Write on-policy preference data: the editor's samples of training tasks, oracle-labelled and paired."""
    from editrl.config import load_config
    from editworld.config import EditorSampleConfig
    from rollout.editor_samples import generate_editor_samples
    from rollout.registry import load_editor, parse_spec

    cfg = load_config(EditorSampleConfig, args.config, list(args.overrides))
    specs = args.editor or ["editworld-tiny"]
    names = [Path(path).name if path else spec for spec, (_, path) in zip(specs, map(parse_spec, specs))]
    if len(set(names)) != len(names):
        raise ValueError(f"--editor names must differ (they label the candidates): {names}")
    editors = {name: load_editor(spec) for name, spec in zip(names, specs)}
    first = names[0]
    summary = generate_editor_samples(args.out, editors.pop(first), cfg, editor_name=first, more_editors=editors)
    print(json.dumps(summary, indent=1))
    return 0
