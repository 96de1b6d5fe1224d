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


# ---- presets extending presets, duplicate keys, where an error came from -------------------------------------
def _preset_cls():
    from dataclasses import dataclass, field

    @dataclass
    class Inner:
        lr: float = 1.0  # learning rate
        steps: int = 1  # steps

    @dataclass
    class Outer:
        name: str = "x"  # a name
        train: Inner = field(default_factory=Inner)  # the train section

    return Outer


def test_extends_merges_section_by_section_and_overrides_apply_on_top(tmp_path):
    from editrl.config import load_config

    (tmp_path / "base.yaml").write_text("name: base\ntrain:\n  lr: 0.5\n  steps: 10\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\ntrain:\n  steps: 20\n")
    cfg = load_config(_preset_cls(), tmp_path / "child.yaml", ["train.lr=0.25"])
    assert (cfg.name, cfg.train.lr, cfg.train.steps) == ("base", 0.25, 20)


def test_extends_loop_and_duplicate_keys_are_errors(tmp_path):
    from editrl.config import ConfigError, load_config

    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="chain loops"):
        load_config(_preset_cls(), tmp_path / "a.yaml")
    (tmp_path / "dup.yaml").write_text("name: a\ntrain:\n  lr: 1\n  lr: 2\n")
    with pytest.raises(ConfigError, match=r"dup.yaml:4: duplicate key 'lr' \(first at line 3\)"):
        load_config(_preset_cls(), tmp_path / "dup.yaml")


def test_errors_name_their_source_and_suggest_the_closest_key(tmp_path):
    from editrl.config import ConfigError, load_config

    (tmp_path / "p.yaml").write_text("train:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match=r"command line \('train\.setps=3'\): unknown config key train\.setps; "
                                          r"did you mean train\.steps\?"):
        load_config(_preset_cls(), tmp_path / "p.yaml", ["train.setps=3"])
    (tmp_path / "bad.yaml").write_text("train:\n  lr: fast\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: train.lr: expected a number"):
        load_config(_preset_cls(), tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match=r"command line: override 'train\.=3'"):
        load_config(_preset_cls(), None, ["train.=3"])
