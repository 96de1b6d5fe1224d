from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from editrl.config import ConfigError, load_config, save_config


@dataclass
class Optim:
    lr: float = 1e-3  # learning rate
    schedule: Literal["cosine", "constant"] = "cosine"


@dataclass
class Run:
    name: str = "run"
    steps: int = 10
    optim: Optim = field(default_factory=Optim)
    tags: list[str] = field(default_factory=list)
    wandb_project: Optional[str] = None


def test_yaml_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("steps: 5\noptim:\n  lr: 0.1\n")
    cfg = load_config(Run, f, ["optim.lr=2e-5", "tags=[a, b]", "optim.schedule=constant"])
    assert cfg.steps == 5 and cfg.optim.lr == 2e-5 and cfg.tags == ["a", "b"]
    assert cfg.optim.schedule == "constant"
    save_config(cfg, tmp_path / "out" / "config.yaml")
    assert load_config(Run, tmp_path / "out" / "config.yaml") == cfg


@pytest.mark.parametrize(
    "override, needle",
    [("optim.lrr=1", "optim.lrr"), ("steps=abc", "steps"), ("steps=1.5", "steps"),
     ("optim.schedule=linear", "optim.schedule"), ("name.x=1", "name")],
)
def test_bad_overrides_name_the_key(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(Run, None, [override])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Run, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(Run, bad)
