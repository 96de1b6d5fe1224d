"""Reward ensembles: the mixture's mean and variance worked out by hand, errors naming the member, the spec, and
the real client path on the shipped checkpoint."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reward.serve.ensemble import RewardEnsemble, combine, parse_ensemble_spec
from reward.serve.scorer import ScoredEdit

DIMS = ("instruction_following", "visual_quality")


def edit(if_mu, vq_mu, sigma, score, score_sigma, error=None):
    return ScoredEdit(mu={DIMS[0]: if_mu, DIMS[1]: vq_mu}, sigma={DIMS[0]: sigma, DIMS[1]: sigma}, score=score,
                      score_sigma=score_sigma, error=error)


def test_mixture_mean_and_variance_by_hand():
    # members: IF 1 and 3 (sigma 0) -> mean 2, variance 0 + ((1-2)^2 + (3-2)^2) / 2 = 1
    # scores 1 and 3, each score_sigma 1 -> mean 2, variance 1 + 1 = 2; disagreement sqrt(1) = 1
    e = combine([edit(1.0, 4.0, 0.0, 1.0, 1.0), edit(3.0, 4.0, 0.0, 3.0, 1.0)], ["a", "b"])
    assert e.mu == {DIMS[0]: 2.0, DIMS[1]: 4.0}
    assert e.sigma[DIMS[0]] == pytest.approx(1.0) and e.sigma[DIMS[1]] == 0.0
    assert e.score == 2.0 and e.score_sigma == pytest.approx(math.sqrt(2.0)) and e.disagreement == pytest.approx(1.0)
    assert e.member_scores == (1.0, 3.0) and e.error is None
    # agreeing members: the ensemble's sigma is their own
    same = combine([edit(1.0, 2.0, 0.5, 1.5, 0.25)] * 3, ["a", "b", "c"])
    assert same.score == 1.5 and same.score_sigma == pytest.approx(0.25) and same.disagreement == 0.0


def test_a_member_failure_fails_the_edit_and_names_the_member():
    e = combine([edit(1.0, 1.0, 0.0, 1.0, 0.0), edit(0, 0, 0, math.nan, math.nan, error="undecodable image")],
                ["ckpt/a", "ckpt/b"])
    assert math.isnan(e.score) and "ensemble member ckpt/b: undecodable image" in e.error


class Fixed:
    """A fake reward client: every edit of a group gets ``scores[i]``."""

    def __init__(self, scores, extra=0):
        self.scores, self.extra = scores, extra

    def score_groups(self, groups):
        return [[edit(s, s, 0.0, s, 0.0) for s in self.scores[:len(g[2]) + self.extra]] for g in groups]


def test_ensemble_client_scores_groups_and_checks_sizes():
    ens = RewardEnsemble([Fixed([0.0, 2.0]), Fixed([2.0, 2.0])], names=["x", "y"])
    (group,) = ens.score_groups([("src", "do it", ["e1", "e2"])])
    assert [s.score for s in group] == [1.0, 2.0] and [s.disagreement for s in group] == [1.0, 0.0]
    with pytest.raises(RuntimeError, match="group 0"):
        RewardEnsemble([Fixed([0.0, 1.0, 2.0]), Fixed([0.0, 1.0, 2.0], extra=1)]).score_groups([("s", "i", ["a", "b"])])
    with pytest.raises(ValueError, match="two or more"):
        RewardEnsemble([Fixed([0.0])])


@pytest.mark.parametrize("spec", ["ensemble:a", "ensemble:a,", "ensemble:,b", "a,b"])
def test_bad_specs_are_refused(spec):
    with pytest.raises(ValueError):
        parse_ensemble_spec(spec)


def test_spec_through_make_reward_client_and_the_uncertainty_reward():
    """Two copies of the shipped reward: the ensemble scores exactly like one member, with zero disagreement,
    and the RL reward function logs the disagreement."""
    from policy.rewards import EditRewardFn
    from reward.serve.client import make_reward_client

    path = "reward/weights/editworld-tiny"
    ens = make_reward_client(f"ensemble:{path},{path}")
    single = make_reward_client(path)
    rng = np.random.default_rng(0)
    ims = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]
    groups = [(ims[0], "make the circle red", ims[1:])]
    got, want = ens.score_groups(groups)[0], single.score_groups(groups)[0]
    assert [g.score for g in got] == pytest.approx([w.score for w in want], abs=1e-5)
    assert all(g.disagreement == pytest.approx(0.0, abs=1e-5) for g in got)
    fn = EditRewardFn(ens, mode="uncertainty", k=1.0)
    r, info = fn(ims[1:], ["make the circle red"] * 2, [{"source": ims[0], "group": 0}] * 2)
    assert info["disagreement"] == pytest.approx([0.0, 0.0], abs=1e-5)
    assert r.tolist() == pytest.approx((info["score"] - info["score_sigma"]).tolist(), abs=1e-5)


def test_best_of_n_checks_every_member_folder(tmp_path):
    import argparse

    from editrl.io import DataError
    from rollout.best_of_n_commands import reward_spec

    good = "reward/weights/editworld-tiny"
    args = argparse.Namespace(service=None, ray_address=None, reward=f"ensemble:{good},{good}")
    assert reward_spec(args) == f"ensemble:{good},{good}"
    args.reward = f"ensemble:{good},{tmp_path / 'missing'}"
    with pytest.raises(DataError, match="missing"):
        reward_spec(args)


def test_the_ensemble_preset_resolves_to_two_shipped_members():
    from editrl.config import load_config
    from policy.config import GRPOConfig
    from policy.config import validate_rl_config

    cfg = load_config(GRPOConfig, "configs/policy/editworld-nft-ensemble.yaml", [])
    validate_rl_config(cfg)
    base = load_config(GRPOConfig, "configs/policy/editworld-nft-kl.yaml", [])
    assert (cfg.train, cfg.sampling, cfg.steps) == (base.train, base.sampling, base.steps)  # only the reward differs
    assert cfg.reward.function == "uncertainty" and cfg.reward.k == 1.0
    members = parse_ensemble_spec(cfg.reward.client)
    assert members == ["reward/weights/editworld-tiny", "reward/weights/editworld-tiny-pretrained"]
    assert all((Path(m) / "model.safetensors").is_file() for m in members)
    # the second member loads on its own: its backbone is rebuilt from backbone_config.json, not from runs/
    from reward.serve.scorer import RewardScorer

    assert RewardScorer.from_checkpoint(members[1]).dimensions == DIMS


def test_a_changed_member_is_caught_on_resume(tmp_path):
    """RL and curation fingerprint every member's weights, as they do a single checkpoint's."""
    import shutil

    from curation.run import reward_fingerprint
    from editrl.config import load_config
    from policy.config import GRPOConfig, run_fingerprint

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree("reward/weights/editworld-tiny", a)
    shutil.copytree("reward/weights/editworld-tiny", b)
    spec = f"ensemble:{a},{b}"
    cfg = load_config(GRPOConfig, "configs/policy/editworld-nft-ensemble.yaml", [f"reward.client={spec}"])
    before_rl, before_cur = run_fingerprint(cfg)["files"], reward_fingerprint(spec)
    assert {"reward checkpoint 1", "reward checkpoint 2"} <= set(before_rl) and "reward checkpoint" not in before_rl
    (b / "model.safetensors").write_bytes((b / "model.safetensors").read_bytes()[:-1] + b"\0")
    after_rl, after_cur = run_fingerprint(cfg)["files"], reward_fingerprint(spec)
    assert after_rl["reward checkpoint 1"] == before_rl["reward checkpoint 1"]
    assert after_rl["reward checkpoint 2"]["digest"] != before_rl["reward checkpoint 2"]["digest"]
    assert after_cur != before_cur and after_cur.split("+")[0] == before_cur.split("+")[0]
    single = load_config(GRPOConfig, "configs/policy/editworld-nft-kl.yaml", [])
    assert "reward checkpoint" in run_fingerprint(single)["files"]  # a single checkpoint keeps its old label
