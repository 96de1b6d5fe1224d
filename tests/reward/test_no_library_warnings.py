"""Model commands call transformers the way this version expects, so it prints no deprecation warnings: the
key/value cache goes in as ``cache`` (``past_key_values`` is deprecated and warns on every call), and a Qwen3-VL
video processor is told ``cap_pixels_per_frame`` (it warns on every clip when that is unset)."""

from __future__ import annotations

import logging
import warnings

import numpy as np
from PIL import Image


def test_group_scoring_with_a_cached_prefix_warns_nothing():
    from reward.serve.scorer import RewardScorer

    scorer = RewardScorer.from_checkpoint("reward/weights/editworld-tiny")
    rng = np.random.default_rng(0)
    image = lambda: Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))  # noqa: E731
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scored = scorer.score_groups([(image(), "add a red square", [image(), image()])])
    assert len(scored[0]) == 2
    assert [str(w.message) for w in caught if "past_key_values" in str(w.message)] == []


def test_clip_inputs_tell_a_qwen3_vl_video_processor_how_to_cap(caplog):
    from transformers import Qwen3VLVideoProcessor
    from transformers.utils import logging as hf_logging

    from reward.model.inputs import video_kwargs

    processor = Qwen3VLVideoProcessor()
    size = {"shortest_edge": 64 * 64, "longest_edge": 64 * 64}
    assert video_kwargs(processor, size)["cap_pixels_per_frame"] is False
    assert "cap_pixels_per_frame" not in video_kwargs(object(), size)  # processors without the option get none
    clip = [np.zeros((64, 64, 3), dtype=np.uint8)] * 2
    hf_logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            out = processor(videos=[clip], return_tensors="pt", **video_kwargs(processor, size))
    finally:
        hf_logging.disable_propagation()
    assert out["video_grid_thw"].shape == (1, 3)
    assert "cap_pixels_per_frame" not in caplog.text
