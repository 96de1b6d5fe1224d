"""An imported EditReward checkpoint reproduces the official code's scores within 1e-5 (fp32): the exact tokens,
pixels and resize, one edit per call and batched, and over cached group prefixes; both key layouts, the wrapped
.pth, bf16 weights, the (stand-in) MiMo base; and `editrl reward score --json`."""

from __future__ import annotations

import hashlib
import json

import pytest

torch = pytest.importorskip("torch")

from official_golden import GOLDEN, IMAGES, TOL, groups, imported, max_diff, scorer  # noqa: E402


def _items(group: dict):
    from reward.serve.scorer import EditInput

    src = IMAGES / group["source"]
    return [EditInput(str(src), group["instruction"], str(IMAGES / e["candidate"])) for e in group["edits"]]


@pytest.mark.parametrize("size, expected", [((640, 480), (364, 504)), ((600, 400), (364, 532)), ((512, 384), (392, 532)),
                                            ((512, 512), (448, 448)), ((300, 300), (448, 448)), ((480, 640), (504, 364))])
def test_smart_resize_keeps_the_official_rounding(size, expected):
    from reward.official.inference import smart_resize

    w, h = size
    assert smart_resize(h, w) == expected  # (height, width); min = max pixels does not pin the count: 640x480 -> 504x364


def test_tokens_grids_and_pixels_are_the_official_ones():
    from reward.official.inference import OfficialInputBuilder

    s = scorer("a")
    assert isinstance(s.builder, OfficialInputBuilder)
    for name, group in groups("qwen25vl").items():
        for k, edit in enumerate(group["edits"]):
            batch = s.builder([IMAGES / group["source"]], [group["instruction"]], [IMAGES / edit["candidate"]])
            for d in range(2):
                ids = batch["input_ids"][d, 0][batch["attention_mask"][d, 0].bool()].tolist()
                assert hashlib.sha256(json.dumps(ids).encode()).hexdigest() == edit["input_ids_sha256"][d], (name, k, d)
            assert batch["image_grid_thw"].tolist() == edit["image_grid_thw"]
            if k == 0:
                pixels = batch["pixel_values"].float().numpy().tobytes()
                assert hashlib.sha256(pixels).hexdigest() == GOLDEN["pixel_values_sha256_fp32"][name]
    assert groups("qwen25vl")["B"]["edits"][0]["image_grid_thw"][0] == [1, 26, 36]  # the 640x480 source


@pytest.mark.parametrize("form, base", [("a", "qwen25vl"), ("b", "qwen25vl"), ("pth_wrapped", "qwen25vl"), ("a", "mimo")])
def test_single_batched_and_group_scores_match_the_official_ones(form, base):
    s = scorer(form, base)
    single, batched = groups(base, "single"), groups(base, "batched")
    for name, group in single.items():
        items = _items(group)
        one_by_one = [s.score([it])[0] for it in items]
        assert max_diff(one_by_one, group["edits"], s.dimensions) < TOL
        assert max_diff(s.score(items), batched[name]["edits"], s.dimensions) < TOL
        grouped = s.score_group(items[0].source, group["instruction"], [it.edited for it in items])
        assert max_diff(grouped, group["edits"], s.dimensions) < TOL
        assert max(abs(a.score - b.score) for a, b in zip(grouped, one_by_one)) < TOL


def test_groups_of_different_sources_share_one_prefix_batch_and_still_match():
    """Both groups in one call, 2 candidates per chunk: padded prefixes of different lengths, mixed image sizes."""
    from reward.serve.scorer import RewardScorer

    s = scorer("a")
    small = RewardScorer(s.model, s.processor, s.cfg, batch_size=2)
    gs = groups("qwen25vl")
    out = small.score_groups([(IMAGES / g["source"], g["instruction"], [IMAGES / e["candidate"] for e in g["edits"]])
                              for g in gs.values()])
    for scored, group in zip(out, gs.values()):
        assert max_diff(scored, group["edits"], s.dimensions) < TOL


def test_score_sigma_is_the_official_fused_sigma():
    import math

    s = scorer("a")
    group = groups("qwen25vl")["A"]
    res = s.score(_items(group)[:1])[0]
    assert res.score_sigma == pytest.approx(math.exp(sum(group["edits"][0]["log_sigma"]) / 2), abs=1e-5)


def test_bf16_weights_computed_in_fp32_match_the_official_run():
    s = scorer("bf16", dtype="float32")
    assert next(s.model.backbone.parameters()).dtype == torch.float32
    for group in GOLDEN["form_d_bf16_weights_fp32_compute"].values():
        assert max_diff(s.score(_items(group)), group["edits"], s.dimensions) < TOL


def test_a_stale_rope_delta_from_a_multimodal_call_does_not_shift_positions():
    s = scorer("a")
    group = groups("qwen25vl")["A"]
    s.model.core.rope_deltas = torch.full((1, 1), 37)
    try:
        assert max_diff(s.score(_items(group)[:2]), group["edits"][:2], s.dimensions) < TOL
    finally:
        s.model.core.rope_deltas = None


def test_the_mimo_template_changes_the_scores():
    """Same weights, the base's own template (its system prompt) decides the tokens: the two bases differ."""
    q, m = groups("qwen25vl")["A"]["edits"][0], groups("mimo")["A"]["edits"][0]
    assert q["input_ids_sha256"] != m["input_ids_sha256"] and abs(q["score"] - m["score"]) > 1e-3
    assert "You are MiMo" in scorer("a", "mimo").builder.text("x", 0)


def test_native_inputs_on_an_official_model_are_refused_unless_asked_for():
    from reward.model.inputs import RewardInputBuilder

    s = scorer("a")
    native_cfg = s.cfg.__class__(**{**s.cfg.__dict__, "inference": "native"})
    batch = RewardInputBuilder(s.processor, native_cfg)([IMAGES / "A_src.png"], ["x"], [IMAGES / "A_cand1.png"])
    with pytest.raises(ValueError, match="official inference mode"):
        s.model(**batch)
    with torch.no_grad():
        out = s.model.with_inference("native")(**batch)
    assert out.mu.shape == (1, 2) and bool(torch.isfinite(out.mu).all())


def test_score_json_prints_the_official_numbers(capsys):
    from editrl.cli import main


    group = groups("qwen25vl")["B"]
    args = ["reward", "score", "--checkpoint", str(imported("a")), "--source", str(IMAGES / group["source"]),
            "--instruction", group["instruction"], "--json", "--edited"] + [str(IMAGES / e["candidate"]) for e in group["edits"]]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["inference"] == "official" and data["aggregation"] == "mean_log_sigma"
    for row, edit in zip(data["edits"], group["edits"], strict=True):
        assert row["error"] is None and abs(row["score"] - edit["score"]) < TOL
        assert abs(row["mu"]["visual_quality"] - edit["mu"][1]) < TOL and row["sigma"]["instruction_following"] > 0
        assert row["score_sigma"] > 0


def test_reward_eval_scores_an_imported_model_the_official_way(tmp_path):
    from reward.eval.editworld_bench import BenchItem, model_gaussians

    s = scorer("a")
    group = groups("qwen25vl")["B"]
    items = [BenchItem(id=str(i), group_id="B", source=str(IMAGES / group["source"]), instruction=group["instruction"],
                       edited=str(IMAGES / e["candidate"]), human_scores={"instruction_following": [3.0]},
                       origin=f"{tmp_path / 'manifest.jsonl'}:{i + 1}") for i, e in enumerate(group["edits"])]
    mu, log_sigma = model_gaussians(s.model, s.processor, s.cfg, items, batch_size=2, progress=False)
    assert abs(mu - [e["mu"] for e in group["edits"]]).max() < TOL
    assert abs(log_sigma - [e["log_sigma"] for e in group["edits"]]).max() < TOL


def test_a_group_encodes_its_prefix_once_and_each_edited_image_once():
    """Language-model calls of one group of 4: the shared prefix (1 row), the 4 edited images, then each pass's
    rubric for the 4 (cut after the reward token), instead of 2 x 4 full sequences."""
    s = scorer("a")
    group = groups("qwen25vl")["A"]
    calls = []
    hook = s.model.core.language_model.register_forward_hook(
        lambda mod, args, kwargs, out: calls.append(tuple(kwargs["inputs_embeds"].shape[:2])), with_kwargs=True)
    try:
        s.score_group(IMAGES / group["source"], group["instruction"], [IMAGES / e["candidate"] for e in group["edits"]])
    finally:
        hook.remove()
    full = s.builder([IMAGES / group["source"]], [group["instruction"]], [IMAGES / group["edits"][0]["candidate"]])
    prefix_len = 1 + int((full["input_ids"][0, 0] == s.builder.tokenizer.convert_tokens_to_ids("<|vision_end|>"))
                         .nonzero()[0])
    assert [rows for rows, _ in calls] == [1, 4, 4, 4]
    assert calls[0][1] == prefix_len and calls[1][1] == 256 + 2  # 448x448 -> 256 visual tokens + start/end
    full_len = int(full["attention_mask"][0, 0].sum())
    assert calls[0][1] + calls[1][1] + calls[2][1] < full_len  # the tail stops at <|Reward|>
