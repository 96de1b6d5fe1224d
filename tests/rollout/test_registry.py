"""Editor specs: prefixes, detection from model_index.json, clear errors, and real loading of tiny pipelines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from editrl.io import DataError
from rollout.registry import detect_kind, load_editor, parse_spec


def _fake_pipeline_folder(root: Path, class_name: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "model_index.json").write_text(json.dumps({"_class_name": class_name, "_diffusers_version": "0.42.1"}))
    return root


def test_parse_spec_prefixes(tmp_path):
    assert parse_spec("editworld-tiny") == ("tiny", None)
    assert parse_spec("flux-kontext:/ckpt/kontext") == ("flux-kontext", "/ckpt/kontext")
    assert parse_spec("qwen-image-edit:/a:b") == ("qwen-image-edit", "/a:b")  # only the first colon splits
    assert parse_spec("step1x-edit:/x") == ("step1x-edit", "/x")
    with pytest.raises(ValueError, match="names no checkpoint folder"):
        parse_spec("flux-kontext:")


def test_detect_kind_from_model_index(tmp_path):
    assert detect_kind(_fake_pipeline_folder(tmp_path / "k", "FluxKontextPipeline")) == "flux-kontext"
    assert detect_kind(_fake_pipeline_folder(tmp_path / "q", "QwenImageEditPipeline")) == "qwen-image-edit"
    assert detect_kind(_fake_pipeline_folder(tmp_path / "s", "Step1XEditPipeline")) == "step1x-edit"
    plain = tmp_path / "plain"
    plain.mkdir()
    assert detect_kind(plain) == "tiny"  # no model_index.json: a tiny editor folder


def test_bad_specs_name_the_file_and_field(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_editor(str(tmp_path / "missing"))
    folder = _fake_pipeline_folder(tmp_path / "sd", "StableDiffusionPipeline")
    with pytest.raises(DataError, match=r"model_index\.json: field '_class_name': unsupported editor pipeline"):
        load_editor(str(folder))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text("{not json")
    with pytest.raises(DataError, match="malformed JSON"):
        load_editor(f"flux-kontext:{broken}")
    with pytest.raises(DataError, match="hub ids are not fetched"):
        load_editor("flux-kontext:black-forest-labs/FLUX.1-Kontext-dev")


def test_wrong_pipeline_for_prefix_is_reported(tmp_path):
    folder = _fake_pipeline_folder(tmp_path / "q", "QwenImageEditPipeline")
    with pytest.raises(DataError, match="expected a FluxKontextPipeline checkpoint, found QwenImageEditPipeline"):
        load_editor(f"flux-kontext:{folder}")


def test_step1x_edit_reports_what_is_missing(tmp_path):
    folder = _fake_pipeline_folder(tmp_path / "s", "Step1XEditPipeline")  # the diffusers-PR layout, empty
    with pytest.raises(DataError, match="component folder 'transformer' is missing"):
        load_editor(f"step1x-edit:{folder}")
    with pytest.raises(DataError, match=r"vae\.safetensors: missing"):  # the official layout, empty
        load_editor(f"step1x-edit:{tmp_path}")


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    from tiny_pipelines import write_tiny_kontext, write_tiny_qwen_edit

    root = tmp_path_factory.mktemp("editors")
    return write_tiny_kontext(root / "kontext"), write_tiny_qwen_edit(root / "qwen")


def test_load_editor_real_pipelines(tiny_checkpoints):
    import torch

    from rollout.flux_kontext import FluxKontextEditor
    from rollout.qwen_image_edit import QwenImageEditEditor

    kontext, qwen = tiny_checkpoints
    by_prefix = load_editor(f"flux-kontext:{kontext}", dtype=torch.float32)
    by_index = load_editor(str(qwen), dtype="float32", resolution=64)
    assert isinstance(by_prefix, FluxKontextEditor) and by_prefix.dtype == torch.float32
    assert isinstance(by_index, QwenImageEditEditor) and by_index.resolution == 64
    assert by_prefix.transformer.__class__.__name__ == "FluxTransformer2DModel"
    assert by_index.transformer.__class__.__name__ == "QwenImageTransformer2DModel"
