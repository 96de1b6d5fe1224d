"""``editrl reward ablate`` through the real CLI on a tiny budget: one row per variant, resume skips, bad keys."""

import json
from pathlib import Path

import pytest
import yaml

from editrl.cli import main
from editworld.config import WorldConfig
from editworld.dataset import generate

TINY = [  # a very small backbone so that a step takes milliseconds (as in test_train.py)
    "model.pixel_area=784", "model.tiny.hidden_size=64", "model.tiny.num_hidden_layers=2",
    "model.tiny.num_attention_heads=2", "model.tiny.num_key_value_heads=2", "model.tiny.intermediate_size=128",
    "model.tiny.vision_depth=2", "model.tiny.vision_hidden_size=32", "model.tiny.vision_num_heads=2",
    "model.tiny.vision_intermediate_size=64", "model.tiny.vision_fullatt_block_indexes=[1]",
    "model.head_width=32", "model.tiny.vocab_merges=20", "train.num_threads=1",
]
BUDGET = ["train.max_steps=3", "train.batch_size=4", "train.eval_every=0", "train.save_every=0",
          "train.log_every=1", "data.val_fraction=0.1", "data.max_val_pairs=8", "train.time_budget_minutes=null"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate(out, WorldConfig(groups=30, size=32, seed=3, workers=1), progress=False)
    return out


def _write_config(path: Path, world: Path, variants: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"base": "configs/reward/editworld-tiny.yaml", "data": str(world),
                                    "overrides": TINY + BUDGET, "eval_batch_size": 32, "variants": variants}))
    return path


VARIANTS = [
    {"name": "reference", "table": "Table 4 / 7", "overrides": []},
    {"name": "shared-head", "table": "Table 4", "overrides": ["model.head=shared", "model.aggregation=min"]},
    {"name": "data-50", "table": "Table 7", "pair_fraction": 0.5, "overrides": ["data.tie_disentangle=false"]},
]


def test_ablate_cli_rows_resume_and_bad_key(world, tmp_path, capsys):
    cfg = _write_config(tmp_path / "ablate.yaml", world, VARIANTS)
    out = tmp_path / "out"
    assert main(["reward", "ablate", "--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "ablate.json").read_text())
    rows = {r["name"]: r for r in report["rows"]}
    assert list(rows) == ["reference", "shared-head", "data-50"]
    for r in rows.values():
        assert 0.0 <= r["pairwise_accuracy"] <= 1.0 and r["bench_pairs"] > 0 and r["steps"] == 3
        assert (out / r["name"] / "final" / "model.safetensors").is_file()
    # the variants really differ as configured, on one budget and seed
    tc = {n: r["train_config"] for n, r in rows.items()}
    assert tc["shared-head"]["model"]["head"] == "shared" and tc["reference"]["model"]["head"] == "multiple"
    assert tc["data-50"]["data"]["tie_disentangle"] is False and 0 < rows["data-50"]["max_pairs"]
    assert rows["reference"]["max_pairs"] is None
    assert len({(t["train"]["max_steps"], t["train"]["lr"], t["train"]["seed"], t["train"]["batch_size"])
                for t in tc.values()}) == 1
    assert (out / "ablate.png").stat().st_size > 1000
    assert "reward ablations" in printed and "shared-head" in printed and "[3/3]" in printed

    # a re-run skips every finished variant: nothing is retrained (metrics files untouched)
    stamps = {n: (out / n / "metrics.jsonl").stat().st_mtime_ns for n in rows}
    assert main(["reward", "ablate", "--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert "skipped" in capsys.readouterr().out
    assert {n: (out / n / "metrics.jsonl").stat().st_mtime_ns for n in rows} == stamps
    again = json.loads((out / "ablate.json").read_text())["rows"]
    assert [r["pairwise_accuracy"] for r in again] == [r["pairwise_accuracy"] for r in report["rows"]]

    # an unknown key in a variant's overrides is an error naming the variant and the key, before any training
    bad = _write_config(tmp_path / "bad.yaml", world, [VARIANTS[0], {"name": "typo", "overrides": ["model.heads=shared"]}])
    assert main(["reward", "ablate", "--config", str(bad), "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "typo" in err and "model.heads" in err
    assert not (tmp_path / "bad" / "reference").exists()


def test_changed_config_of_a_finished_variant_is_an_error(world, tmp_path, capsys):
    cfg = _write_config(tmp_path / "a.yaml", world, VARIANTS[:1])
    out = tmp_path / "out"
    assert main(["reward", "ablate", "--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["reward", "ablate", "--config", str(cfg), "--out", str(out), "--no-progress", "train.lr=1e-4"]) == 2
    err = capsys.readouterr().err
    assert "reference" in err and "train.lr" in err


def test_interrupted_variant_resumes_from_its_checkpoint(world, tmp_path, capsys):
    from reward.eval.ablate import load_ablation, variant_train_configs
    from reward.train.trainer import train

    cfg_path = _write_config(tmp_path / "a.yaml", world, VARIANTS[:1])
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["reward", "ablate", "--config", str(cfg_path), "--out", str(full), "--no-progress"]) == 0
    # the same variant, killed after 2 of its 3 steps (a checkpoint, no final model), then the ablation rerun
    tcfg = variant_train_configs(load_ablation(cfg_path, [f"out_dir={cut}"]), cut)[0]
    assert train(tcfg, stop_at_step=2, progress=False).final_dir is None
    capsys.readouterr()
    assert main(["reward", "ablate", "--config", str(cfg_path), "--out", str(cut), "--no-progress"]) == 0
    assert "resumed from" in capsys.readouterr().out
    a, b = (json.loads((d / "ablate.json").read_text())["rows"][0] for d in (full, cut))
    assert b["steps"] == 3 and a["pairwise_accuracy"] == pytest.approx(b["pairwise_accuracy"], abs=1e-9)
