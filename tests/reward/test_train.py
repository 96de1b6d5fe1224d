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
from editrl.dimensions import DIMENSIONS
from editrl.io import DataError
from editrl.metrics import read_metrics
from reward.train.config import RewardTrainConfig

IF, VQ = DIMENSIONS
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
    assert (out / "checkpoints" / "step_000020" / "optimizer.safetensors").is_file()
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
    from reward.train.trainer import train

    mode = f"data.batching={batching}"
    full = train(_cfg(dataset, tmp_path / "full", "train.max_steps=6", mode), progress=False)
    first = train(_cfg(dataset, tmp_path / "split", "train.max_steps=6", mode), stop_at_step=3, progress=False)
    assert first.step == 3 and first.final_dir is None and first.last_checkpoint.name == "step_000003"
    second = train(_cfg(dataset, tmp_path / "split", "train.max_steps=6", mode, f"resume={first.last_checkpoint}"),
                   progress=False)
    assert second.step == 6 and len(full.losses) == 6
    np.testing.assert_allclose(first.losses + second.losses, full.losses, rtol=0, atol=1e-6)
    # and the weights end up the same
    from safetensors.torch import load_file

    a = load_file(str(next((tmp_path / "full" / "final").glob("*.safetensors"))))
    b = load_file(str(next((tmp_path / "split" / "final").glob("*.safetensors"))))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "final" / "model.safetensors"))


def _damage(folder: Path, how: str) -> None:
    if how == "partial":      # the folder of a checkpoint whose state.json was never written
        (folder / "state.json").unlink()
    elif how == "truncated":  # a weights file cut short (size differs from the manifest)
        w = folder / "model.safetensors"
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    else:                     # same size, garbage inside: only loading it tells
        w = folder / "model.safetensors"
        w.write_bytes(b"\xff" * w.stat().st_size)


@pytest.mark.parametrize("how", ["partial", "truncated", "garbled"])
def test_resume_auto_skips_a_damaged_newest_checkpoint(dataset, tmp_path, how):
    """A run stopped at step 4 (checkpoints at 2 and 4) whose newest checkpoint is torn resumes from step 2 with a
    warning naming the skipped one, and ends on the uninterrupted loss curve and weights."""
    from reward.train.trainer import train

    full = train(_cfg(dataset, tmp_path / "full", "train.max_steps=6"), progress=False)
    first = train(_cfg(dataset, tmp_path / "split", "train.max_steps=6", "train.save_every=2"), stop_at_step=4,
                  progress=False)
    ckpts = tmp_path / "split" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_000002", "step_000004"]
    assert (ckpts / "step_000004" / "state.json").is_file() and (ckpts / "step_000004" / "reward_config.yaml").is_file()
    _damage(ckpts / "step_000004", how)
    with pytest.warns(UserWarning, match="step_000004"):
        second = train(_cfg(dataset, tmp_path / "split", "train.max_steps=6", "train.save_every=2", "resume=auto"),
                       progress=False)
    assert second.step == 6 and len(second.losses) == 4  # steps 3..6, from the checkpoint of step 2
    np.testing.assert_allclose(first.losses[:2] + second.losses, full.losses, rtol=0, atol=1e-6)
    a, b = _final_weights(tmp_path / "full"), _final_weights(tmp_path / "split")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    # keep_checkpoints=2: the newest two complete ones remain, each a loadable model folder
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_000004", "step_000006"]
    from reward.model.editreward import load_checkpoint

    load_checkpoint(ckpts / "step_000006")


def test_init_from_starts_at_the_checkpoint_weights_and_refuses_another_architecture(dataset, tmp_path):
    """Fine-tuning: zero steps of a run with ``init_from`` write the checkpoint's weights back unchanged (a fresh
    model would not match them), and a model section that differs names the field and the checkpoint."""
    from safetensors.torch import load_file

    from reward.train.trainer import train

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
    from reward.train.data import GroupCollator, GroupDataset, PairCollator, PairDataset
    from reward.model.inputs import RewardInputBuilder
    from reward.train.trainer import build_model, pair_loss, prepare_pairs

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
    with pytest.raises(DataError, match="state.json missing"):
        from reward.train.trainer import train

        train(_cfg(dataset, tmp_path / "o2", "train.max_steps=1", f"resume={tmp_path}"), progress=False)


def _overrides(data: Path, out: Path) -> list[str]:
    return ["--config", "configs/reward/editworld-tiny.yaml", f"data.train={data}", f"out_dir={out}", *TINY]


@pytest.mark.slow  # DeepSpeed JIT-compiles a communication op on first use (~1 min)
def test_deepspeed_zero2_on_cpu_trains_and_resumes_exactly(dataset, tmp_path, monkeypatch):
    """The shipped ZeRO-2 config through accelerate on CPU: a DeepSpeed engine really runs, checkpoints stay
    safetensors, and a resumed run continues the same loss curve."""
    pytest.importorskip("deepspeed")
    from reward.train.trainer import train

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


_LAUNCHED = """
import json, sys
from pathlib import Path
from accelerate import PartialState
from editrl.config import load_config
from reward.train.config import RewardTrainConfig
from reward.train.trainer import train
runs, out = json.loads(sys.argv[1]), {}
for name, overrides, stop in runs:
    out[name] = train(load_config(RewardTrainConfig, None, overrides), stop_at_step=stop, progress=False).losses
if PartialState().is_main_process:
    Path(sys.argv[2]).write_text(json.dumps(out))
"""


def test_two_processes_train_the_same_global_batch_and_resume_across_world_sizes(dataset, tmp_path):
    """``accelerate launch --num_processes 2`` (CPU, gloo) of 4 pairs per rank follows the loss curve of one process
    with 8 pairs: the global batch is the same pairs. A 2-process checkpoint resumes in 1 and in 2 processes, and a
    1-process checkpoint in 2, all on the same curve. (Head dropout off: its masks depend on the batch layout.)"""
    import os
    import socket
    import subprocess
    import sys

    from reward.train.trainer import train

    def overrides(out: str, batch: int, *extra: str) -> list[str]:
        return [f"data.train={dataset}", f"out_dir={tmp_path / out}", "data.val_fraction=0.2", "train.lr=3e-3",
                f"train.batch_size={batch}", "train.warmup_ratio=0.1", "train.log_every=1", "train.eval_every=0",
                "train.max_steps=6", "train.save_every=3", "model.head_dropout=0", *TINY, *extra]

    one = train(load_config(RewardTrainConfig, None, overrides("one", 8)), progress=False)
    # groups of unequal sizes (a subset of the pairs): each rank's mean loss is weighed by its share of the pairs
    groups = ["data.batching=groups", "data.max_pairs=40"]
    one_groups = train(load_config(RewardTrainConfig, None, overrides("one_groups", 4, *groups)), progress=False)
    runs = [("two", overrides("two", 4), 3),
            ("two_resumed", overrides("two", 4, "resume=auto"), None),
            ("two_from_one", overrides("two_from_one", 4, f"resume={tmp_path / 'one/checkpoints/step_000003'}"), None),
            ("two_groups", overrides("two_groups", 2, *groups), None)]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script = tmp_path / "launched.py"
    script.write_text(_LAUNCHED)
    # --multi_gpu selects accelerate's torchrun launcher (N worker processes); without CUDA the trainer runs on CPU
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
           str(script), json.dumps(runs), str(tmp_path / "losses.json")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "6 steps of 4x1x2 pairs" in proc.stdout
    two = json.loads((tmp_path / "losses.json").read_text())
    np.testing.assert_allclose(two["two"] + two["two_resumed"], one.losses, rtol=0, atol=1e-5)
    np.testing.assert_allclose(one.losses[:3] + two["two_from_one"], one.losses, rtol=0, atol=1e-5)
    np.testing.assert_allclose(two["two_groups"], one_groups.losses, rtol=0, atol=1e-5)
    resumed_in_one = train(load_config(RewardTrainConfig, None, overrides(
        "one_from_two", 8, f"resume={tmp_path / 'two/checkpoints/step_000003'}")), progress=False)
    np.testing.assert_allclose(two["two"] + resumed_in_one.losses, one.losses, rtol=0, atol=1e-5)
    # (weights are not compared: Adam turns the float noise of an analytically zero gradient, e.g. the mu head's
    # output bias under a ranking loss, into lr-sized steps; the loss is blind to those parameters)
    from reward.model.editreward import load_checkpoint

    load_checkpoint(tmp_path / "two" / "final")
