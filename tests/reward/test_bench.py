"""The reward-inference benchmark: the 7B-shaped config is right, and the CLI run compares styles on one model."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")


def test_full_shapes_config_has_qwen25_vl_7b_dimensions_and_about_7b_parameters():
    from transformers import Qwen2_5_VLModel

    from reward.model.backbone import build_tiny_processor, ensure_reward_token
    from reward.serve.throughput import full_shapes_model_config, qwen25_vl_7b_config
    from reward.serve.config import ServiceConfig, image_tokens

    cfg = full_shapes_model_config()
    processor = build_tiny_processor(None, cfg)
    ensure_reward_token(processor, cfg.reward_token)
    config = qwen25_vl_7b_config(processor)
    text, vision = config.get_text_config(), config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (3584, 28, 28, 4)
    assert (text.intermediate_size, text.vocab_size) == (18944, 152064)
    assert (vision.depth, vision.hidden_size, vision.num_heads, vision.out_hidden_size) == (32, 1280, 16, 3584)
    assert list(vision.fullatt_block_indexes) == [7, 15, 23, 31]
    assert config.image_token_id == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert cfg.dtype == "bfloat16" and image_tokens(None, area=cfg.pixel_area) == 256  # 448x448 -> 256 visual tokens

    with torch.device("meta"):
        model = Qwen2_5_VLModel(config)
    n_params = sum(p.numel() for p in model.parameters())
    assert 7.0e9 < n_params < 8.5e9, n_params  # Qwen2.5-VL-7B without its LM head: ~7.75B
    assert ServiceConfig(image_area=cfg.pixel_area).image_area == 448 * 448


def test_bench_cli_scores_the_same_edits_every_way_and_reports_ratios(tmp_path, capsys):
    from editrl.cli import main

    out = tmp_path / "bench.json"
    assert main(["reward", "bench", "--items", "16", "--group-sizes", "4", "8", "--threads", "1",
                 "--batch-size", "16", "--repeats", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    styles = [row["style"] for row in result["rows"] if row["mode"] == "native"]
    assert styles[0].startswith("official-style") and styles[-2:] == ["shared prefix, G=4", "shared prefix, G=8"]
    assert result["items"] == 16 and result["tokens_per_edit"] > 10
    rows = {row["style"]: row for row in result["rows"]}
    assert rows[styles[0]]["ratio_to_official"] == 1.0
    for row in result["rows"]:
        assert row["edits_per_s"] > 0 and row["repeats"] == 2  # after a warm-up: the median and the best of 2
        assert row["seconds_min"] <= row["seconds"] and row["edits_per_s_best"] >= row["edits_per_s"]
        assert row["max_abs_diff_vs_official"] < 1e-4  # same model, same edits: the styles agree on the scores
    # two dimensions from one pass must beat one pass per dimension, and sharing the prefix beats both by far
    assert rows["shared prefix, G=8"]["ratio_to_official"] > 1.5
    printed = capsys.readouterr().out
    assert "edits/s (median of 2)" in printed and "edits/s (best)" in printed


def test_full_shapes_refuses_cpu(capsys):
    from editrl.cli import main

    assert main(["reward", "bench", "--full-shapes", "--device", "cpu"]) == 2  # a usage error, before any allocation
    assert "--device cuda" in capsys.readouterr().err
