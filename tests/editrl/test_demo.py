"""The demo runs its stages through the public functions and writes one self-contained report that reads well:
verdicts in words with intervals, images at a legible size, units, and a provenance block."""

import base64
import json
import re
from html.parser import HTMLParser

import pytest

from editrl.cli import main
from editrl.report import MIN_IMAGE_PX, file_sha256, git_commit, png_size

STAGE_HEADINGS = {"world": "1. The editworld", "reward": "2. The reward model", "curate": "3. Curation",
                  "best-of-n": "4. Best-of-N", "grpo": "5. GRPO"}


class _Images(HTMLParser):
    """Every <img> of a page: its width/height attributes and the pixel size of its embedded PNG."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            a = dict(attrs)
            data = base64.b64decode(a["src"].split(",", 1)[1])
            self.images.append({"width": int(a["width"]), "height": int(a["height"]), "png": png_size(data),
                                "class": a.get("class", "")})


@pytest.fixture(scope="module")
def random_reward(tmp_path_factory):
    from reward.model.config import RewardModelConfig
    from reward.model.editreward import build_reward_model, save_checkpoint

    cfg = RewardModelConfig()
    model, processor = build_reward_model(cfg)
    return save_checkpoint(model, processor, cfg, tmp_path_factory.mktemp("reward") / "ckpt")


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory, random_reward):
    out = tmp_path_factory.mktemp("demo") / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--reward", str(random_reward)]) == 0
    return out


def test_quick_demo_runs_every_stage_with_a_random_reward_checkpoint(quick_demo):
    out = quick_demo
    html = (out / "report.html").read_text()
    assert "oracle vs true Spearman" in html and "pixel-difference heuristic" in html
    for stage, heading in STAGE_HEADINGS.items():
        assert heading in html, stage
        assert f"{stage} stage wall time" in html, stage
    assert "the checkpoint given with --reward" in html and "QUICK MODE" in html
    assert "data:image/png;base64," in html  # figures are embedded
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) >= set(STAGE_HEADINGS) | {"total"}
    for stage in ("curate", "best-of-n", "grpo"):
        assert (out / stage).is_dir()
    assert (out / "curate" / "demo_histograms.png").is_file() and (out / "best-of-n" / "demo_sweep.png").is_file()
    assert (out / "grpo" / "curves.png").is_file() and (out / "grpo" / "reeval.json").is_file()


def test_report_states_each_verdict_in_words_with_its_interval_and_explains_units(quick_demo):
    html = (quick_demo / "report.html").read_text()
    verdicts = re.findall(r'<p class="verdict (sig|ns)">(.*?)</p>', html)
    text = [t for _, t in verdicts]
    for what in ("Reward pairwise accuracy", "Curation:", "N = 2: aggregate pick minus random pick", "GRPO: held-out"):
        assert any(what in t for t in text), what
    for cls, t in verdicts:
        assert "95% interval" in t and re.search(r"\[[-+]?\d+\.\d+, [-+]?\d+\.\d+\]|\[n/a, n/a\]", t), t
        assert ("not significant" in t) == (cls == "ns"), t
    assert "Verdicts at a glance" in html
    assert "1-4 scale" in html and "logit-like" in html  # units of the oracle and of the reward
    # best-of-N: the documented measurement's sampling (ODE candidates), said in words
    assert "--noise-level 0 " in html and "ODE candidates differing in their initial noise" in html
    assert "The candidates are ODE edits (noise 0" in html
    assert "lcb (mu - k sigma, k = 1) is shown only when it picks a different candidate" in html


def test_report_shows_every_image_at_least_96_px(quick_demo):
    parser = _Images()
    parser.feed((quick_demo / "report.html").read_text())
    assert len(parser.images) >= 8 + 4 * 2 + 4  # curation extremes, held-out grid tiles, figures
    for im in parser.images:
        assert min(im["width"], im["height"]) >= MIN_IMAGE_PX, im
        assert min(im["png"]) >= MIN_IMAGE_PX, im  # upscaled in the file, not only stretched by the browser
    tiles = [im for im in parser.images if im["class"] == "pixels"]
    assert tiles and all(im["width"] >= 128 for im in tiles)  # 32 px editworld images shown 4x


def test_report_has_a_provenance_block(quick_demo):
    from editrl.demo import GRPO_PRESET, ROOT

    html = (quick_demo / "report.html").read_text()
    assert "<h2>Provenance</h2>" in html
    prov = html.split("<h2>Provenance</h2>", 1)[1]
    assert f"$ editrl demo --out {quick_demo} --seed 0" in prov and "--quick" in prov
    for cmd in ("editrl world generate", "editrl reward eval", "editrl curate", "editrl best-of-n --sweep",
                "editrl policy grpo --config configs/policy/editworld-nft-kl.yaml"):
        assert cmd in prov, cmd
    assert "configs/policy/editworld-nft-kl.yaml" in prov and file_sha256(GRPO_PRESET) in prov
    meta = json.loads((quick_demo / "demo.json").read_text())
    commit = meta["provenance"]["git_commit"]  # HEAD when the demo ran (others may commit while the test runs)
    assert commit in prov and re.fullmatch(r"[0-9a-f]{40}( \(uncommitted changes\))?|unknown", commit)
    assert commit.split()[0] == "unknown" or len(git_commit(ROOT).split()[0]) == 40
    for pkg in ("torch", "transformers", "diffusers", "ray", "editrl"):
        assert f"package {pkg}</td>" in prov, pkg
    assert "date (UTC)" in prov and "held-out task seed" in prov
    assert meta["seeds"] and meta["config_sha256"][str(GRPO_PRESET)] == file_sha256(GRPO_PRESET)


def test_report_is_rendered_again_from_the_outputs_alone(quick_demo):
    from editrl.demo import render

    before = (quick_demo / "report.html").read_text()
    render(quick_demo)
    assert (quick_demo / "report.html").read_text() == before


def test_demo_trains_a_reward_briefly_when_none_is_shipped_and_says_so(tmp_path, monkeypatch):
    import editrl.demo as demo

    monkeypatch.setattr(demo, "SHIPPED_REWARD", tmp_path / "no-shipped-reward")
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--skip", "curate,best-of-n,grpo"]) == 0
    html = (out / "report.html").read_text()
    assert "trained BRIEFLY BY THIS DEMO" in html and "NOT the shipped model" in html
    assert "3. Curation" not in html and "5. GRPO" not in html
    assert set(json.loads((out / "timings.json").read_text())) == {"world", "reward", "total"}
    assert (out / "reward-train" / "final").is_dir()
    assert "editrl reward train --config configs/reward/editworld-tiny.yaml" in html


def test_demo_rejects_an_unknown_stage(tmp_path):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--skip", "nonsense"]) == 2
