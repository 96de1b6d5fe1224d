"""Reward-model training: a short run through the real CLI, exact resume, evaluation, bad input."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from editrl.cli import main
from editrl.config import load_config
from editrl.io import DataError
from editrl.metrics import read_metrics
from reward.train_config import RewardTrainConfig

IF, VQ = "instruction_following", "visual_quality"
TINY = [  # a very small backbone so that a step takes milliseconds
    "model.pixel_area=784", "model.tiny.hidden_size=64", "model.tiny.num_hidden_layers=2",
    "model.tiny.num_attention_heads=2", "model.tiny.num_key_value_heads=2", "model.tiny.intermediate_size=128",
    "model.tiny.vision_depth=2", "model.tiny.vision_hidden_size=32", "model.tiny.vision_num_heads=2",
    "model.tiny.vision_intermediate_size=64", "model.tiny.vision_fullatt_block_indexes=[1]",
    "model.head_width=32", "model.tiny.vocab_merges=20", "train.num_threads=1",
    "data.extra_train=[]",  # the preset also trains on data folders the tests do not make
]


def write_fixture(root: Path, groups: int = 24, seed: int = 0) -> Path:
    """An editworld-layout dataset where the preferred edit adds a clean square and the rejected one adds noise."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    pairs, manifest = [], []
    for g in range(groups):
        base = np.full((28, 28, 3), rng.integers(40, 200, size=3), dtype=np.uint8)
        good, bad, noop = base.copy(), base.copy(), base.copy()
        good[8:20, 8:20] = (220, 30, 30)
        bad[8:20, 8:20] = (220, 30, 30)
        bad = np.clip(bad + rng.normal(0, 60, bad.shape), 0, 255).astype(np.uint8)
        names = {}
        for kind, arr in [("source", base), ("good", good), ("bad", bad), ("noop", noop)]:
            names[kind] = f"images/{g:03d}_{kind}.png"
            (root / "images").mkdir(exist_ok=True)
            Image.fromarray(arr).save(root / names[kind])
        split = "bench" if g % 4 == 0 else "train"
        scores = {"good": (4, 4), "bad": (4, 1), "noop": (1, 4)}
        for kind, (s_if, s_vq) in scores.items():
            n_ann = 3 if split == "bench" else 1
            manifest.append({"id": f"{g}-{kind}", "group_id": g, "split": split, "source": names["source"],
                             "target": names["good"], "edited": names[kind], "instruction": "add a red square",
                             "task": {}, "editor": {}, "true_scores": {IF: s_if, VQ: s_vq},
                             "human_scores": {IF: [s_if] * n_ann, VQ: [s_vq] * n_ann}})
        if split == "train":
            for w, l in [("good", "bad"), ("good", "noop")]:
                pairs.append({"group_id": g, "source": names["source"], "instruction": "add a red square",
                              "preferred": names[w], "rejected": names[l],
                              "preferred_scores": dict(zip((IF, VQ), scores[w])),
                              "rejected_scores": dict(zip((IF, VQ), scores[l])), "tie": False, "disentangle": False})
            pairs.append({"group_id": g, "source": names["source"], "instruction": "add a red square",
                          "preferred": names["bad"], "rejected": names["noop"],
                          "preferred_scores": {IF: 4, VQ: 1}, "rejected_scores": {IF: 1, VQ: 4},
                          "tie": True, "disentangle": True})
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs))
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in manifest))
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("pairs"))


def _cfg(dataset: Path, out: Path, *extra: str) -> RewardTrainConfig:
    return load_config(RewardTrainConfig, None, [
        f"data.train={dataset}", f"out_dir={out}", "data.val_fraction=0.2", "train.lr=3e-3", "train.batch_size=4",
        "train.warmup_ratio=0.1", "train.log_every=1", "train.eval_every=0", *TINY, *extra])


def test_cli_train_runs_and_learns(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    overrides = [f"data.train={dataset}", f"out_dir={out}", "data.val_fraction=0.2", "data.tie_disentangle=false",
                 "train.lr=1e-2", "train.batch_size=8", "train.max_steps=20", "train.log_every=1",
                 "train.eval_every=10", *TINY]
    assert main(["reward", "train", "--no-progress", "--config", "configs/reward/editworld-tiny.yaml", *overrides]) == 0
    rows = read_metrics(out / "metrics.jsonl")
    losses = [r["train/loss"] for r in rows if r.get("train/loss") is not None]
    assert len(losses) == 20 and all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])  # it learns the clean-square-vs-noise signal
    assert any("val/acc" in r for r in rows) and all(r["train/sigma_mean_d0"] > 0 for r in rows if "train/loss" in r)
    assert (out / "final").is_dir() and any((out / "final").glob("*.safetensors"))
    assert (out / "checkpoints" / "step-000020" / "optimizer.safetensors").is_file()
    assert (out / "training_curve.png").stat().st_size > 1000 and (out / "config.yaml").is_file()
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt")) and not list(out.rglob("*.pkl"))
    assert "validation pairwise accuracy" in capsys.readouterr().out

    # the basic `reward eval` on the fixture's bench split prints the model beside the baselines
    assert main(["reward", "eval", "--checkpoint", str(out / "final"), "--data", str(dataset),
                 "--out", str(tmp_path / "eval")]) == 0
    printed = capsys.readouterr().out
    for name in ("reward model", "untrained", "pixel-difference", "random"):
        assert name in printed
    res = json.loads((tmp_path / "eval" / "editworld_eval.json").read_text())["results"]
    assert res["reward model"]["pairs"] == 6 * 2  # 6 bench groups x 2 non-tied pairs (bad vs no-op is a tie)
    assert (tmp_path / "eval" / "scores_reward.jsonl").is_file()


@pytest.mark.parametrize("batching", ["pairs", "groups"])
def test_resume_reproduces_the_uninterrupted_loss_curve(dataset, tmp_path, batching):
    from reward.trainer import train

    mode = f"data.batching={batching}"
    full = train(_cfg(dataset, tmp_path / "full", "train.max_steps=6", mode), progress=False)
    first = train(_cfg(dataset, tmp_path / "split", "train.max_steps=6", mode), stop_at_step=3, progress=False)
    assert first.step == 3 and first.final_dir is None and first.last_checkpoint.name == "step-000003"
    second = train(_cfg(dataset, tmp_path / "split", "train.max_steps=6", mode, f"resume={first.last_checkpoint}"),
                   progress=False)
    assert second.step == 6 and len(full.losses) == 6
    np.testing.assert_allclose(first.losses + second.losses, full.losses, rtol=0, atol=1e-6)
    # and the weights end up the same
    from safetensors.torch import load_file

    a = load_file(str(next((tmp_path / "full" / "final").glob("*.safetensors"))))
    b = load_file(str(next((tmp_path / "split" / "final").glob("*.safetensors"))))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_init_from_starts_at_the_checkpoint_weights_and_refuses_another_architecture(dataset, tmp_path):
    """Fine-tuning: zero steps of a run with ``init_from`` write the checkpoint's weights back unchanged (a fresh
    model would not match them), and a model section that differs names the field and the checkpoint."""
    from safetensors.torch import load_file

    from reward.trainer import train

    base = train(_cfg(dataset, tmp_path / "base", "train.max_steps=4"), progress=False)
    tuned = train(_cfg(dataset, tmp_path / "tuned", "train.max_steps=2", "train.lr=0", "train.warmup_ratio=0",
                       f"init_from={base.final_dir}"), progress=False)
    fresh = train(_cfg(dataset, tmp_path / "fresh", "train.max_steps=2", "train.lr=0", "train.warmup_ratio=0"),
                  progress=False)
    a, b, c = (load_file(str(next((d / "final").glob("*.safetensors")))) for d in (tmp_path / "base",
                                                                                     tmp_path / "tuned",
                                                                                     tmp_path / "fresh"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert tuned.losses[0] < fresh.losses[0]  # it starts where the base run ended, not at a fresh model's loss

    with pytest.raises(DataError, match=r"reward_config.yaml.*head_width: config 48, checkpoint 32"):
        train(_cfg(dataset, tmp_path / "bad", "train.max_steps=1", f"init_from={base.final_dir}",
                   "model.head_width=48"), progress=False)


def test_group_batches_forward_each_candidate_once_and_score_every_pair(dataset):
    """A fixture group has 3 candidates (good, bad, noop) and 4 training samples: good>bad, good>noop and the
    disentangled tie bad/noop in both orders. Grouped, that is 3 sequences and 4 (winner, loser) rows; the loss on
    the gathered rows equals the pair-batch loss of the same 4 samples (same model, same sequences)."""
    from reward.data import GroupCollator, GroupDataset, PairCollator, PairDataset
    from reward.inputs import RewardInputBuilder
    from reward.trainer import build_model, pair_loss, prepare_pairs

    cfg = _cfg(dataset, Path("unused"), "data.val_fraction=0.0")
    samples, _ = prepare_pairs(cfg)
    groups = GroupDataset(samples)
    first = [s for s in samples if s.group == samples[0].group]
    assert len(groups) == len({s.group for s in samples}) and len(first) == 4
    item = groups[0]
    assert len(item["editeds"]) == 3 and sorted(item["pairs"]) == [(0, 1), (0, 2), (1, 2), (2, 1)]
    torch.manual_seed(0)
    model, processor = build_model(cfg.model)
    model.eval()
    builder = RewardInputBuilder(processor, cfg.model)
    batch, scores, pairs = GroupCollator(builder)([item])
    assert batch["input_ids"].shape[0] == 3 and pairs.shape == (4, 2)
    with torch.no_grad():
        out = model(**batch)
        rows = torch.cat([pairs[:, 0], pairs[:, 1]])
        grouped = pair_loss(cfg, out.mu[rows], out.log_sigma[rows], scores[rows])
        pbatch, pscores = PairCollator(builder)([PairDataset(first)[i] for i in range(4)])
        pout = model(**pbatch)
        paired = pair_loss(cfg, pout.mu, pout.log_sigma, pscores)
    torch.testing.assert_close(grouped, paired, rtol=1e-4, atol=1e-5)


def test_bad_input_is_reported_with_its_place(dataset, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    rows = (dataset / "pairs.jsonl").read_text().splitlines()
    row = json.loads(rows[1])
    row["instruction"] = ""
    (bad / "pairs.jsonl").write_text("\n".join([rows[0], json.dumps(row)]) + "\n")
    assert main(["reward", "train", *_overrides(bad, tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "pairs.jsonl:2" in err and "instruction" in err
    assert main(["reward", "train", *_overrides(dataset, tmp_path / "o"), "train.lr=fast"]) == 2
    assert "train.lr" in capsys.readouterr().err
    with pytest.raises(DataError, match="trainer_state.json"):
        from reward.trainer import train

        train(_cfg(dataset, tmp_path / "o2", "train.max_steps=1", f"resume={tmp_path}"), progress=False)


def _overrides(data: Path, out: Path) -> list[str]:
    return ["--config", "configs/reward/editworld-tiny.yaml", f"data.train={data}", f"out_dir={out}", *TINY]


@pytest.mark.slow  # DeepSpeed JIT-compiles a communication op on first use (~1 min)
def test_deepspeed_zero2_on_cpu_trains_and_resumes_exactly(dataset, tmp_path, monkeypatch):
    """The shipped ZeRO-2 config through accelerate on CPU: a DeepSpeed engine really runs, checkpoints stay
    safetensors, and a resumed run continues the same loss curve."""
    pytest.importorskip("deepspeed")
    from reward.trainer import train

    for k, v in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": "29561"}.items():
        monkeypatch.setenv(k, v)
    from accelerate.state import AcceleratorState

    ds = "train.deepspeed=configs/reward/deepspeed_zero2.json"
    runs = []
    for out, extra, stop in [("full", [], None), ("split", [], 3), ("split", ["resume=LAST"], None)]:
        AcceleratorState._reset_state(True)  # accelerate allows one DeepSpeed plugin per process state
        extra = [e.replace("LAST", str(runs[-1].last_checkpoint)) for e in extra]
        runs.append(train(_cfg(dataset, tmp_path / out, "train.max_steps=6", ds, *extra), stop_at_step=stop,
                          progress=False))
    full, first, second = runs
    np.testing.assert_allclose(first.losses + second.losses, full.losses, rtol=0, atol=1e-6)
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.bin"))
    assert AcceleratorState().deepspeed_plugin is not None  # DeepSpeed was engaged, not silently dropped
