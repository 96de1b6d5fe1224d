"""A damaged or inconsistent reward checkpoint is an error naming the file and the tensor or key, never NaN scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from editrl.io import DataError
from reward.model.editreward import load_checkpoint

SHIPPED = Path(__file__).resolve().parents[2] / "reward" / "weights" / "editworld-tiny"
pytestmark = pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="shipped reward not present")


@pytest.fixture
def ckpt(tmp_path) -> Path:
    return Path(shutil.copytree(SHIPPED, tmp_path / "ckpt"))


def test_non_finite_weights_name_the_file_and_tensor(ckpt, tmp_path, capsys):
    from PIL import Image
    from safetensors.torch import load_file, save_file

    from editrl.cli import main

    state = load_file(str(ckpt / "model.safetensors"))
    key = "heads.0.3.weight" if "heads.0.3.weight" in state else sorted(state)[-1]
    state[key].view(-1)[3] = float("nan")  # one flipped exponent bit is enough
    save_file(state, str(ckpt / "model.safetensors"))
    with pytest.raises(DataError, match=rf"model.safetensors: field '{key}': tensor '{key}' holds 1 non-finite"):
        load_checkpoint(ckpt)
    Image.new("RGB", (32, 32), "red").save(tmp_path / "a.png")
    code = main(["reward", "score", "--checkpoint", str(ckpt), "--source", str(tmp_path / "a.png"),
                 "--instruction", "make it blue", "--edited", str(tmp_path / "a.png")])
    assert code == 2 and "non-finite values" in capsys.readouterr().err


def test_backbone_config_errors_name_the_file(ckpt):
    arch = ckpt / "backbone_config.json"
    config = json.loads(arch.read_text())
    config["text_config"]["hidden_size"] = "abc"
    arch.write_text(json.dumps(config))
    with pytest.raises(DataError, match=r"backbone_config.json: cannot build the backbone: .*hidden_size"):
        load_checkpoint(ckpt)
    config["text_config"]["hidden_size"] = 128
    config["vision_config"]["windw_size"] = 64
    arch.write_text(json.dumps(config))
    with pytest.raises(DataError, match=r"backbone_config.json: field 'vision_config.windw_size': unknown key "
                                        r".*did you mean vision_config.window_size\?"):
        load_checkpoint(ckpt)


def test_tiny_sizes_that_the_weights_do_not_have_are_errors(ckpt):
    path = ckpt / "reward_config.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["tiny"]["seed"] = 7  # init-only: says how the weights began, changes nothing now
    path.write_text(yaml.safe_dump(cfg))
    load_checkpoint(ckpt)
    cfg["tiny"]["hidden_size"] = 256
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(DataError, match=r"reward_config.yaml: field 'tiny.hidden_size': tiny.hidden_size = 256 but "
                                        r"backbone_config.json has text_config.hidden_size = 128"):
        load_checkpoint(ckpt)
