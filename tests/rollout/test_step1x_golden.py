"""Step1X-Edit against the official code's outputs on tiny random checkpoints (tests/data/step1x/README.md), fp32.

Matched within 1e-5 of each tensor's scale (its largest magnitude, at least 1): the encoder's hidden states (token
ids exactly), the VAE posterior mean and decode, the DiT + connector velocity of a CFG pair at sigma 0.95 (rescaled
CFG) and 0.5, and the 6-step deterministic sample (v1.0, v1.1, two image sizes, the 4.55 prompt variant and the
truncate-1.0 variant) given the official conditioner's embeddings. Measured: up to 3.6e-6 of the scale for the DiT
(7e-5 on CFG velocities up to 20), 8.5e-6 for the VAE decode (values below 1); the official fp32 outputs are as far
from a float64 run of the adapter, so an absolute 1e-5 would sit below the reference's own rounding on some CPUs. From the source image alone (our encoder
and VAE) the sample differs by ~1e-4 on values up to 15: the official conditioner rounds its output to bfloat16, and
1e-6 differences flip a few roundings. Negative controls show wrong-version position ids, dropping the 640-row
padding and ignoring ``scale_factor`` are caught. A meta-device build maps every key of the full-size 12.4B
checkpoints strictly.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from step1x_tiny import DATA, golden, prompts, write_official, write_qwen

TOL = 1e-5
SIZE_LEVEL = {"nonsquare": 128, "square": 64}


@pytest.fixture(scope="module")
def gold():
    return golden()


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    return write_qwen(tmp_path_factory.mktemp("qwen") / "qwen")


@pytest.fixture(scope="module")
def editors(tmp_path_factory, qwen):
    from rollout.step1x_edit import Step1XEditEditor

    root = tmp_path_factory.mktemp("step1x")
    return {v: Step1XEditEditor.from_pretrained(str(write_official(root / v, v, qwen)), dtype="float32")
            for v in ("v1.0", "v1.1")}


def _source(name: str) -> Image.Image:
    return Image.open(DATA / "images" / f"source_{name}.png").convert("RGB")


def _max(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def _err(ours: torch.Tensor, want: torch.Tensor) -> float:
    """Largest difference as a fraction of the golden tensor's scale (its largest magnitude, at least 1)."""
    return _max(ours, want) / max(1.0, float(want.float().abs().max()))


def _golden_cond(editor, gold, image: str, encoder: str = "tf451"):
    """The editor's conditioning with the official conditioner's embeddings and the golden reference latent."""
    from rollout.step1x import sampler

    editor.size_level = SIZE_LEVEL[image]
    cond = editor.prepare([_source(image)], [prompts()["prompts"][0]])
    embs, masks = gold[f"encoder_{encoder}/{image}.embs"], gold[f"encoder_{encoder}/{image}.masks"]
    return replace(cond, embeds=embs[:1], mask=masks[:1], negative_embeds=embs[1:], negative_mask=masks[1:],
                   image_latents=sampler.pack(gold[f"vae_golden/{image}.latent_mean_scaled"]))


def test_encoder_reproduces_the_official_conditioner(editors, gold):
    from rollout.step1x.sampler import input_size, resize_source

    enc, p = editors["v1.0"].encoder, prompts()["prompts"]
    image = resize_source(_source("nonsquare"), input_size(*_source("nonsquare").size, 128))
    for role, text in (("cond", p[0]), ("uncond", "")):
        inputs = enc.inputs(text, image)
        assert torch.equal(inputs["input_ids"], gold[f"encoder_tf451/nonsquare.{role}.input_ids"])
        if role == "cond":
            assert torch.equal(inputs["image_grid_thw"], gold["encoder_tf451/nonsquare.cond.image_grid_thw"])
            assert torch.equal(inputs["pixel_values"][:2], gold["encoder_tf451/nonsquare.cond.pixel_values_first2"])
            assert int(inputs["input_ids"][0, 217]) == 25  # the prefix's last ':' is embedding row 0
            assert int((inputs["attention_mask"] == 0).sum()) == 1  # the final unquoted '!' (id 0) is masked
        assert _err(enc.hidden_states(inputs), gold[f"encoder_tf451/nonsquare.{role}.hidden_last_fp32"]) < TOL
    for i in range(2, 6):  # apostrophe -> quote, curly quotes, punctuation and spaces inside quotes, plain
        assert torch.equal(enc.inputs(p[i], image)["input_ids"], gold[f"encoder_tf451/prompt{i}.input_ids"]), p[i]
    embeds, mask = enc([p[0], ""], [image, image])
    want = gold["encoder_tf451/nonsquare.embs"]
    assert embeds.dtype == torch.bfloat16 and torch.equal(mask, gold["encoder_tf451/nonsquare.masks"])
    assert mask.sum(1).tolist() == [517 - 217, 498 - 217] and not embeds[:, 300:].any()
    # bfloat16 rows of hidden states equal to 1e-5: at most a few roundings fall the other way (one bf16 step)
    diff = (embeds.float() - want.float()).abs()
    assert int((diff > 0).sum()) < 50 and bool((diff <= want.float().abs() * 2 ** -7 + 1e-30).all())


def test_encoder_4_55_variant(qwen, gold):
    from rollout.step1x.prompt import Step1XPromptEncoder
    from rollout.step1x.sampler import input_size, resize_source
    from rollout.step1x_edit import ENCODER_VARIANTS

    enc = Step1XPromptEncoder.from_folders(qwen, qwen, torch.float32, **ENCODER_VARIANTS["4.55"])
    image = resize_source(_source("nonsquare"), input_size(150, 100, 128))
    inputs = enc.inputs(prompts()["prompts"][0], image)
    assert torch.equal(inputs["input_ids"], gold["encoder_tf455/nonsquare.cond.input_ids"])  # "Picture 1: "
    assert _err(enc.hidden_states(inputs), gold["encoder_tf455/nonsquare.cond.hidden_last_fp32"]) < TOL


def test_vae_posterior_mean_and_decode(editors, gold):
    from rollout.step1x import sampler

    editor = editors["v1.1"]
    src = _source("nonsquare")
    resized = sampler.resize_source(src, sampler.input_size(*src.size, 128))
    assert np.array_equal(np.asarray(resized), gold["vae_golden/nonsquare.resized_uint8"].numpy())
    pixels = torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)[None].float() / 255 * 2 - 1
    with torch.no_grad():
        mean = editor.vae.encode(pixels).latent_dist.mean
        decoded = editor.vae.decode(gold["vae_golden/nonsquare.latent_mean_scaled"] / 0.3611 + 0.1159).sample
    assert _err(mean, gold["vae_golden/nonsquare.posterior_mean"]) < TOL
    scaled = sampler.unpack(editor.encode_sources([resized]), 96, 144)
    assert _err(scaled, gold["vae_golden/nonsquare.latent_mean_scaled"]) < TOL
    assert _err(decoded, gold["vae_golden/nonsquare.decoded"]) < TOL


@pytest.mark.parametrize("version", ["v1.0", "v1.1"])
def test_velocity_of_a_cfg_pair(editors, gold, version):
    from rollout.step1x import sampler

    editor = editors[version]
    cond = _golden_cond(editor, gold, "nonsquare")
    g = f"dit_velocity_{version}/"
    assert torch.equal(cond.latent_ids, gold[g + "img_ids"][0])
    x = sampler.pack(gold["dit_velocity_inputs/x_t_unpacked"])
    with torch.no_grad():
        for sigma in (0.95, 0.5):
            assert _err(editor.velocity(x, sigma, cond, guidance=6.0), gold[f"{g}sigma{sigma}.v_cfg"]) < TOL
        t = torch.full((2,), 0.95)
        embeds, mask = torch.cat([cond.embeds, cond.negative_embeds]).float(), torch.cat([cond.mask, cond.negative_mask])
        raw = editor.transformer(torch.cat([x, cond.image_latents], 1).repeat(2, 1, 1), t, embeds, mask, cond.latent_ids)
        _, pooled = editor.transformer.connector(embeds, t, mask)
    assert _err(raw, gold[g + "sigma0.95.pred_raw"]) < TOL  # reference-token predictions included
    assert _err(pooled, gold[g + "sigma0.95.connector_y"]) < TOL


def test_what_remains_is_fp32_rounding(editors, gold, qwen, tmp_path):
    """Built in float64, the adapter is as close to the official fp32 output as our fp32 run is to it: the ~1e-5
    (of values up to 18) between the two fp32 runs is each side's own rounding, not a difference in the model."""
    from rollout.step1x import sampler
    from rollout.step1x_edit import Step1XEditEditor

    exact = Step1XEditEditor.from_pretrained(str(write_official(tmp_path / "v1.1", "v1.1", qwen)), dtype="float64")
    runs = {}
    for name, editor in (("fp32", editors["v1.1"]), ("fp64", exact)):
        cond = _golden_cond(editor, gold, "nonsquare")
        dtype = editor.transformer.dit.dtype
        x = torch.cat([sampler.pack(gold["dit_velocity_inputs/x_t_unpacked"]), cond.image_latents], 1)
        embeds = torch.cat([cond.embeds, cond.negative_embeds]).to(dtype)
        with torch.no_grad():
            runs[name] = editor.transformer(x.repeat(2, 1, 1).to(dtype), torch.full((2,), 0.95, dtype=dtype), embeds,
                                            torch.cat([cond.mask, cond.negative_mask]), cond.latent_ids.to(dtype))
    official = gold["dit_velocity_v1.1/sigma0.95.pred_raw"].double()
    assert _err(official, runs["fp64"]) < 2e-6 and _err(runs["fp32"].double(), runs["fp64"]) < 2e-6


@pytest.mark.parametrize("version,image,encoder", [("v1.0", "nonsquare", "tf451"), ("v1.1", "nonsquare", "tf451"),
                                                   ("v1.0", "square", "tf451"), ("v1.1", "square", "tf451"),
                                                   ("v1.1", "nonsquare", "tf455")])
def test_six_step_cfg_sample_matches_the_official_sampler(editors, gold, version, image, encoder):
    from rollout.step1x import sampler

    editor = editors[version]
    cond = _golden_cond(editor, gold, image, encoder)
    s = f"sample_{version}/{image}."
    sigmas = editor.sigmas(6, cond)
    assert _max(sigmas.double(), gold[s + "tf451.timesteps"]) == 0.0
    out = editor.sample(cond, 6, noise_level=0.0, guidance=6.0, initial=sampler.pack(gold[s + "noise"]))
    assert _err(out.latents_final, gold[f"{s}{encoder}.final_packed"]) < TOL


def test_truncate_one_reproduces_the_first_release(editors, gold):
    from rollout.step1x import sampler

    editor = editors["v1.0"]
    cond = _golden_cond(editor, gold, "nonsquare")
    noise = sampler.pack(gold["sample_v1.0/nonsquare.noise"])
    editor.cfg_truncate = 1.0
    try:
        legacy = editor.sample(cond, 6, noise_level=0.0, initial=noise).latents_final
    finally:
        editor.cfg_truncate = 0.93
    assert _err(legacy, gold["sample_v1.0/nonsquare.tf451.legacy_trunc1.0.final_packed"]) < TOL
    assert _max(legacy, gold["sample_v1.0/nonsquare.tf451.final_packed"]) > 1e-2  # the rescale matters


@pytest.mark.parametrize("version", ["v1.0", "v1.1"])
def test_end_to_end_from_the_source_image(editors, gold, version):
    """Our encoder and VAE too: bf16 rounding of the conditioner output bounds the agreement (module docstring)."""
    from rollout.step1x import sampler

    editor = editors[version]
    editor.size_level = 128
    cond = editor.prepare([_source("nonsquare")], [prompts()["prompts"][0]])
    s = f"sample_{version}/nonsquare."
    out = editor.sample(cond, 6, noise_level=0.0, initial=sampler.pack(gold[s + "noise"]))
    want = gold[s + "tf451.final_packed"]
    assert _max(out.latents_final, want) < 3e-4 and float(want.abs().max()) > 10
    image = np.asarray(out.images[0]).astype(int)
    assert image.shape == (100, 150, 3)  # resized back to the source size
    assert np.abs(image - gold[s + "tf451.output_uint8"].numpy().astype(int)).max() <= 1


def test_wrong_ids_dropped_padding_and_ignored_scale_factor_are_caught(editors, gold):
    from rollout.step1x import sampler

    x = sampler.pack(gold["dit_velocity_inputs/x_t_unpacked"])
    for version, other in (("v1.1", "v1.0"), ("v1.0", "v1.1")):
        editor = editors[version]
        cond = _golden_cond(editor, gold, "nonsquare")
        want = gold[f"dit_velocity_{version}/sigma0.5.v_cfg"]
        with torch.no_grad():
            wrong_ids = replace(cond, latent_ids=sampler.image_ids(6, 9, other))
            assert _max(editor.velocity(x, 0.5, wrong_ids), want) > 0.03  # 0.07 (v1.0), 0.17 (v1.1)
            n = int(cond.mask.sum())  # 300 valid rows of 640
            unpadded = replace(cond, embeds=cond.embeds[:, :n], mask=cond.mask[:, :n],
                               negative_embeds=cond.negative_embeds[:, :n], negative_mask=cond.negative_mask[:, :n])
            assert _max(editor.velocity(x, 0.5, unpadded), want) > 1.0  # 3.7 (v1.0), 15 (v1.1)
            assert _err(editor.velocity(x, 0.5, cond), want) < TOL
    connector = editors["v1.0"].transformer.connector
    stored = connector.scale_factor
    assert float(stored) == pytest.approx(-0.55)
    cond = _golden_cond(editors["v1.0"], gold, "nonsquare")
    try:
        connector.scale_factor = None  # as if the pooled mean were not scaled
        with torch.no_grad():
            ignored = editors["v1.0"].velocity(x, 0.5, cond)
    finally:
        connector.scale_factor = stored
    assert _max(ignored, gold["dit_velocity_v1.0/sigma0.5.v_cfg"]) > 1.0  # 10.4


def test_full_size_checkpoints_map_strictly_on_meta():
    from rollout.step1x import convert

    doc = json.loads(gzip.open(DATA / "full_size_keys.json.gz").read())
    for version in ("v1.0", "v1.1"):
        entry = doc[version]
        with torch.device("meta"):
            state = {k: torch.empty(v["shape"]) for k, v in entry["keys"].items()}
        assert len(state) == entry["n_tensors"] and convert.detect_version(state) == version
        dit, conn = convert.split_connector(state)
        flux = convert.build_flux(convert.official_to_flux(dit), torch.bfloat16)
        connector = convert.build_connector(conn, None, torch.bfloat16)
        assert flux.config.num_layers == 19 and flux.config.num_single_layers == 38
        assert tuple(flux.config.axes_dims_rope) == (16, 56, 56) and flux.config.joint_attention_dim == 4096
        assert connector.S.individual_token_refiner.blocks[0].heads == 32
        params = sum(p.numel() for p in flux.parameters()) + sum(p.numel() for p in connector.parameters())
        assert params == sum(int(np.prod(v.shape)) for v in state.values())
        if version == "v1.0":
            assert params == entry["n_params"] == 12_427_800_385
        assert all(p.device.type == "meta" and p.dtype == torch.bfloat16 for p in flux.parameters())
    with torch.device("meta"):
        vae_state = {k: torch.empty(v["shape"]) for k, v in doc["vae"]["keys"].items()}
    vae = convert.build_vae(vae_state, torch.float32)
    assert len(vae.state_dict()) == len(vae_state) == 244
    assert tuple(vae.config.block_out_channels) == (128, 256, 512, 512) and vae.config.layers_per_block == 2
