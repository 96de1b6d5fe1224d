"""policy.rewards: grouping through the client, aggregate / dimension / uncertainty / oracle / mix, failures."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from policy.rewards import (REWARD_FUNCTIONS, EditRewardFn, MixedRewardFn, OracleRewardFn, build_reward_fn,
                            needs_client)
from reward.serve.scorer import ScoredEdit

DIMS = ("instruction_following", "visual_quality")


def _solid(value: int) -> Image.Image:
    return Image.new("RGB", (8, 8), (value, value, value))


class FakeClient:
    """Scores an edit from its pixel value: mu_IF = v/100, mu_VQ = 1, sigma_IF = 0.5, sigma_VQ = 0.1; 255 fails."""

    def __init__(self) -> None:
        self.calls: list = []

    def score_groups(self, groups):
        self.calls.append(groups)
        out = []
        for source, instruction, edited in groups:
            res = []
            for im in edited:
                v = im.getpixel((0, 0))[0]
                if v == 255:
                    res.append(ScoredEdit.failed(DIMS, "bad image"))
                    continue
                mu = {"instruction_following": v / 100, "visual_quality": 1.0}
                sigma = {"instruction_following": 0.5, "visual_quality": 0.1}
                res.append(ScoredEdit(mu=mu, sigma=sigma, score=(mu["instruction_following"] + 1.0) / 2,
                                      score_sigma=math.sqrt(0.25 + 0.01) / 2))
            out.append(res)
        return out


def _batch():
    # groups interleaved on purpose: a, b, a, b
    images = [_solid(100), _solid(200), _solid(300 - 200), _solid(50)]
    images[2] = _solid(0)
    prompts = ["recolour", "remove", "recolour", "remove"]
    srcs = {"a": _solid(10), "b": _solid(20)}
    meta = [{"source": srcs[g], "group": g} for g in ("a", "b", "a", "b")]
    return images, prompts, meta


def test_editreward_groups_items_in_one_call_and_keeps_order():
    client = FakeClient()
    images, prompts, meta = _batch()
    r, info = EditRewardFn(client, "aggregate")(images, prompts, meta)
    assert len(client.calls) == 1
    groups = client.calls[0]
    assert [g[1] for g in groups] == ["recolour", "remove"]
    assert groups[0][0] is meta[0]["source"] and [im.getpixel((0, 0))[0] for im in groups[0][2]] == [100, 0]
    assert [im.getpixel((0, 0))[0] for im in groups[1][2]] == [200, 50]
    # back in input order: score = (v/100 + 1) / 2
    torch.testing.assert_close(r, torch.tensor([1.0, 1.5, 0.5, 0.75]))
    np.testing.assert_allclose(info["mu_instruction_following"], [1.0, 2.0, 0.0, 0.5])
    np.testing.assert_allclose(info["sigma_visual_quality"], [0.1] * 4)


def test_dimension_and_uncertainty_modes():
    images, prompts, meta = _batch()
    r_dim, _ = EditRewardFn(FakeClient(), "dimension", dimension="instruction_following")(images, prompts, meta)
    torch.testing.assert_close(r_dim, torch.tensor([1.0, 2.0, 0.0, 0.5]))
    k = 2.0
    r_unc, _ = EditRewardFn(FakeClient(), "uncertainty", k=k)(images, prompts, meta)
    s = math.sqrt(0.26) / 2
    torch.testing.assert_close(r_unc, torch.tensor([1.0, 1.5, 0.5, 0.75]) - k * s)
    with pytest.raises(KeyError, match="no dimension"):
        EditRewardFn(FakeClient(), "dimension", dimension="realism")(images, prompts, meta)


def test_failed_items_get_nan_and_are_counted():
    images, prompts, meta = _batch()
    images[1] = _solid(255)
    r, info = EditRewardFn(FakeClient())(images, prompts, meta)
    assert math.isnan(float(r[1])) and torch.isfinite(r[[0, 2, 3]]).all()
    np.testing.assert_array_equal(info["reward_error"], [0, 1, 0, 0])


def test_oracle_reward_prefers_the_target_to_the_source():
    from editworld.tasks import sample_tasks

    tasks = sample_tasks(3, seed=5)
    images = [t.target_image(32) for t in tasks] + [t.source_image(32) for t in tasks]
    meta = [{"source": t.source_image(32), "group": i % 3, "task": t} for i, t in enumerate(tasks + tasks)]
    prompts = [t.instruction for t in tasks + tasks]
    r, info = OracleRewardFn("instruction_following")(images, prompts, meta)
    assert (r[:3] > r[3:]).all()
    assert set(info) == {"oracle_instruction_following", "oracle_visual_quality"}
    r_mean, _ = OracleRewardFn("mean")(images, prompts, meta)
    np.testing.assert_allclose(r_mean.numpy(), (info["oracle_instruction_following"]
                                                + info["oracle_visual_quality"]) / 2, rtol=1e-6)
    with pytest.raises(ValueError, match="task"):
        OracleRewardFn()(images[:1], prompts[:1], [{"source": None, "group": 0}])


def test_mix_is_the_weighted_sum_of_its_parts():
    images, prompts, meta = _batch()
    const = lambda ims, ps, md: (torch.full((len(ims),), 3.0), {"c": np.ones(len(ims))})  # a user-defined reward
    mix = MixedRewardFn({"editreward": (EditRewardFn(FakeClient()), 0.5), "const": (const, -1.0)})
    r, info = mix(images, prompts, meta)
    torch.testing.assert_close(r, 0.5 * torch.tensor([1.0, 1.5, 0.5, 0.75]) - 3.0)
    assert "editreward/mu_instruction_following" in info and "const/c" in info and "const/reward" in info


def test_registry_builds_from_a_config_section():
    spec = SimpleNamespace(function="mix", mix={"dimension": 1.0, "uncertainty": 2.0}, dimension="instruction_following",
                           k=1.0, client="unused", device=None)
    fn = build_reward_fn(spec, client=FakeClient())
    images, prompts, meta = _batch()
    r, _ = fn(images, prompts, meta)
    expected = torch.tensor([1.0, 2.0, 0.0, 0.5]) + 2.0 * (torch.tensor([1.0, 1.5, 0.5, 0.75]) - math.sqrt(0.26) / 2)
    torch.testing.assert_close(r, expected)
    assert set(REWARD_FUNCTIONS) == {"editreward", "dimension", "uncertainty", "oracle", "mix"}
    assert not needs_client(SimpleNamespace(function="oracle", mix={}))
    assert needs_client(SimpleNamespace(function="mix", mix={"oracle": 1.0, "editreward": 1.0}))
    with pytest.raises(KeyError, match="unknown"):
        build_reward_fn(SimpleNamespace(function="clip", mix={}), client=FakeClient())
    with pytest.raises(KeyError, match="unknown part"):
        build_reward_fn(SimpleNamespace(function="mix", mix={"nope": 1.0}, dimension="x", k=1.0), client=FakeClient())


def test_length_mismatch_is_an_error():
    images, prompts, meta = _batch()
    with pytest.raises(ValueError, match="differ"):
        EditRewardFn(FakeClient())(images, prompts[:2], meta)
    with pytest.raises(ValueError, match="group"):
        EditRewardFn(FakeClient())(images, prompts, [{"source": None}] * 4)


def test_margin_over_seeds_by_hand(tmp_path, capsys):
    from editrl.metrics import MetricsSink
    from policy.rl_report import margin_over_seeds, plot_curves

    paths = []
    for i, (start, end) in enumerate([(1.0, 1.5), (1.2, 1.4), (1.1, 1.4)]):
        with MetricsSink(tmp_path / f"s{i}") as sink:
            sink.log({"eval/oracle_instruction_following": start, "reward_mean": 0.1}, step=0)
            sink.log({"reward_mean": 0.2}, step=1)
            sink.log({"eval/oracle_instruction_following": end, "reward_mean": 0.3}, step=2)
        paths.append(sink.path)
    m = margin_over_seeds(paths)
    # gains 0.5, 0.2, 0.3: mean 1/3, sd 0.1528, t(0.975, 2) = 4.303 -> half width 0.3795
    assert m["n"] == 3 and m["mean"] == pytest.approx(1 / 3)
    assert m["ci"][0] == pytest.approx(1 / 3 - 0.37947, abs=1e-4) and m["ci"][1] == pytest.approx(1 / 3 + 0.37947, abs=1e-4)
    assert plot_curves(paths[0]).stat().st_size > 1000

    # the same through `editrl policy margins`: the runs had no held-out learned reward, so that row is left out
    import json

    from editrl.cli import main

    assert main(["policy", "margins", *[str(p.parent) for p in paths], "--out", str(tmp_path / "m.json"),
                 "--plot", str(tmp_path / "seeds.png")]) == 0
    assert (tmp_path / "seeds.png").stat().st_size > 1000
    table = json.loads((tmp_path / "m.json").read_text())["margins"]
    assert set(table) == {"eval/oracle_instruction_following"}
    assert table["eval/oracle_instruction_following"]["gains"] == pytest.approx([0.5, 0.2, 0.3])
    capsys.readouterr()
    # one run has no interval: the table says so instead of printing NaN bounds
    assert main(["policy", "margins", str(paths[0].parent)]) == 0
    assert "n/a (1 run)" in capsys.readouterr().out
    assert main(["policy", "margins", str(tmp_path / "nowhere")]) != 0
    assert "nowhere/metrics.jsonl: missing" in capsys.readouterr().err
