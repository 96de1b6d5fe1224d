"""`editrl reward import-official`: every released checkpoint form imports to the same editrl checkpoint, which
loads strictly; unsafe pickles, unknown keys, wrong head counts/widths and a foreign tokenizer are refused."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import pytest

torch = pytest.importorskip("torch")

from official_golden import BASES, DATA, checkpoint_dir, imported, official_state  # noqa: E402

from editrl.io import DataError  # noqa: E402


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_import_writes_an_official_mode_checkpoint_that_loads_strictly():
    from reward.model.editreward import load_checkpoint

    out = imported("a")
    model, processor, cfg = load_checkpoint(out)
    assert cfg.inference == "official" and cfg.aggregation == "mean_log_sigma" and cfg.reward_token == "<|Reward|>"
    assert (cfg.head, cfg.head_width, cfg.head_bottleneck, cfg.pixel_area) == ("multiple", 1024, 16, 256 * 28 * 28)
    assert model.reward_token_id == 322 == len(processor.tokenizer) - 1  # added after the base's 322 tokens
    assert model.core.get_input_embeddings().weight.shape == (323, 32)  # the checkpoint's rows, not the base's 384
    assert processor.chat_template == json.loads((BASES["qwen25vl"] / "chat_template.json").read_text())["chat_template"]
    report = json.loads((out / "extra.json").read_text())["official_import"]
    assert report["layout"] == "transformers>=4.52" and report["container"] == "safetensors"
    assert "lm_head.weight" in report["dropped"] and report["embedding_rows"] == 323
    # every official tensor but lm_head arrives under its editrl name, unchanged
    official, ours = official_state(), _weights(out)
    assert len(ours) == len(official) - 1
    assert torch.equal(ours["backbone.visual.patch_embed.proj.weight"], official["model.visual.patch_embed.proj.weight"])
    assert torch.equal(ours["heads.1.5.bias"], official["rm_heads.head_1.5.bias"])
    assert (out / "finetune.yaml").read_text().startswith("# editrl reward train --config")


@pytest.mark.parametrize("form, container, layout", [
    ("b", "safetensors", "transformers<4.52"),
    ("pth_wrapped", "pth ({'model': ...} wrapper)", "transformers>=4.52"),
    ("pth_raw", "pth (raw state dict)", "transformers>=4.52"),
])
def test_every_form_gives_the_same_weights(form, container, layout):
    out = imported(form)
    report = json.loads((out / "extra.json").read_text())["official_import"]
    assert (report["container"], report["layout"]) == (container, layout)
    ref, got = _weights(imported("a")), _weights(out)
    assert set(ref) == set(got) and all(torch.equal(ref[k], got[k]) for k in ref)


def test_bf16_checkpoint_keeps_its_dtypes_and_computes_in_bf16_by_default():
    from reward.model.editreward import load_checkpoint

    out = imported("bf16")
    got = _weights(out)
    assert got["backbone.language_model.embed_tokens.weight"].dtype == torch.bfloat16
    assert got["heads.0.0.weight"].dtype == torch.float32  # the official heads stay fp32
    _, _, cfg = load_checkpoint(out)
    assert cfg.dtype == "bfloat16"


def test_cli_prints_what_it_read(tmp_path, capsys):
    from editrl.cli import main

    out = tmp_path / "imported"
    assert main(["reward", "import-official", "--checkpoint", str(checkpoint_dir("b")), "--base",
                 str(BASES["mimo"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "transformers<4.52" in printed and "323" in printed and "lm_head.weight" in printed
    assert main(["reward", "import-official", "--checkpoint", str(checkpoint_dir("b")), "--base",
                 str(BASES["mimo"]), "--out", str(out)]) == 2  # the folder exists now: refused, not overwritten
    assert "not empty" in capsys.readouterr().err


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_carrying_code_is_refused_and_never_run(tmp_path):
    from reward.official.importer import import_official

    ckpt = tmp_path / "evil"
    ckpt.mkdir()
    payload = _RunsCode()
    payload.marker = tmp_path / "it-ran"
    with open(ckpt / "model.pth", "wb") as f:
        pickle.dump({"model": {"rm_heads.head_0.0.weight": payload}}, f)
    with pytest.raises(DataError, match="refused: the pickle holds more than tensors") as err:
        import_official(ckpt, BASES["qwen25vl"], tmp_path / "out")
    assert str(ckpt / "model.pth") in str(err.value)
    assert not payload.marker.exists() and not (tmp_path / "out").exists()


def _broken(tmp_path, edit):
    from safetensors.torch import save_file

    state = official_state()
    edit(state)
    ckpt = tmp_path / "broken"
    ckpt.mkdir()
    save_file(state, str(ckpt / "model.safetensors"))
    return ckpt


@pytest.mark.parametrize("edit, field, message", [
    (lambda s: s.__setitem__("model.language_model.extra_proj.weight", torch.zeros(2)),
     "model.language_model.extra_proj.weight", "not part of the base's architecture"),
    (lambda s: s.__setitem__("optimizer.state", torch.zeros(2)), "optimizer.state", "unknown key"),
    (lambda s: s.update({k.replace("head_1", "head_2"): v.clone() for k, v in s.items() if "head_1" in k}),
     "rm_heads.head_0.0.bias", "3 reward heads"),
    (lambda s: s.update({"rm_heads.head_1.5.weight": torch.zeros(3, 16), "rm_heads.head_1.5.bias": torch.zeros(3)}),
     "rm_heads.head_1.5.weight", "has 3 outputs"),
    (lambda s: s.__setitem__("model.language_model.embed_tokens.weight", torch.zeros(322, 32)),
     "model.language_model.embed_tokens.weight", "322 rows, but the base's tokenizer with <|Reward|> has 323"),
    (lambda s: s.__setitem__("model.visual.merger.mlp.0.weight", torch.zeros(7, 7)),
     "model.visual.merger.mlp.0.weight", "has shape (7, 7)"),
])
def test_bad_checkpoints_are_refused_naming_the_key(tmp_path, edit, field, message):
    from reward.official.importer import import_official

    ckpt = _broken(tmp_path, edit)
    with pytest.raises(DataError, match=message.replace("|", r"\|").replace("(", r"\(").replace(")", r"\)")) as err:
        import_official(ckpt, BASES["qwen25vl"], tmp_path / "out")
    assert err.value.field == field and str(ckpt / "model.safetensors") in str(err.value)


def test_missing_files_and_a_base_without_config_are_errors(tmp_path):
    from reward.official.importer import import_official

    with pytest.raises(DataError, match="no model.pth or model.safetensors"):
        import_official(tmp_path, BASES["qwen25vl"], tmp_path / "out")
    base = tmp_path / "base"
    shutil.copytree(BASES["mimo"], base)
    (base / "config.json").unlink()
    with pytest.raises(DataError, match="no config.json"):
        import_official(DATA / "checkpoint_a", base, tmp_path / "out")
