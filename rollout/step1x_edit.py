"""Step1X-Edit (v1.0 and v1.1) behind editrl's ``Editor`` interface, from the official release files.

No diffusers release has a Step1X-Edit pipeline (PR #12249 is open), so the adapter assembles library classes —
the DiT as a diffusers ``FluxTransformer2DModel`` without guidance embedding, the FLUX ``AutoencoderKL``, the
transformers ``Qwen2_5_VLForConditionalGeneration`` and its processor — with what no library has
(``rollout.step1x``): the token-refiner connector, the weight mapping and version detection, the prompt encoder,
the official schedule, norm-rescaled CFG and position ids.

With ``noise_level=0`` it reproduces the official ``ImageGenerator.generate_image`` (stepfun-ai/Step1X-Edit at
95feaea, ``timesteps_truncate=0.93``) in fp32 to a few 1e-6 of the output's scale (fp32 rounding: the official
output is as far from a float64 run), except that the source latent is the VAE posterior *mean*: the official
``encode`` samples the posterior with unseeded noise, so it is not reproducible itself.
Per step the DiT sees ``[noisy target tokens, reference tokens]`` (Kontext-style; the prediction for the
reference is discarded) with all 640 text rows and no attention mask; ``guidance`` (6.0) is true CFG against
``negative_prompt`` ("") with the official rescale ``d / |d|**0.4`` (where ``|d| > 1``) for sigma above
``cfg_truncate`` (0.93; 1.0 reproduces the Apr-Jul 2025 code, plain CFG); ``guidance <= 1`` runs the conditional
branch only. ``size_level`` (512) sets the editing area, as the official ``--size_level``; the output is resized
back to the source size.

Loading, ``step1x-edit:DIR`` (``rollout.step1x.layout``): the official folder — ``step1x-edit-i1258.safetensors``
(v1.0) or ``step1x-edit-v1p1-official.safetensors`` (v1.1), ``vae.safetensors``, a Qwen2.5-VL subfolder — or the
diffusers-PR folder (``model_index.json`` ``Step1XEditPipeline``; ``transformer/ vae/ text_encoder/
processor/``). The version is read from the weights (``connector.scale_factor`` means v1.0). Sizes come from the
tensor shapes; what the weights do not hold must be passed when it differs from the release: ``axes_dims_rope``
(release (16, 56, 56)) and ``connector_heads`` (release 32). ``encoder_variant``: "4.51" renders the prompt as
transformers 4.51.3 (the official pin) does, "4.55" as 4.55.0 (the README's tested version: "Picture 1: " and the
torchvision image processor). LoRA attaches to the DiT by default; connector modules (``self_attn_qkv``,
``self_attn_proj``, ``fc1``, ``fc2``) can be named in the targets too.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from PIL import Image

from rollout.editor import DEFAULT_LORA_TARGETS, Editor, index_rows
from rollout.step1x import sampler

ENCODER_VARIANTS = {"4.51": dict(vision_id=False, fast_image_processor=False),
                    "4.55": dict(vision_id=True, fast_image_processor=True)}


@dataclass
class Step1XConditioning:
    """Everything the denoiser needs for a batch of (source, instruction) rows; tensors have batch dim first."""

    embeds: torch.Tensor  # (B, 640, D) Qwen hidden states (bfloat16, as the official conditioner stores them)
    mask: torch.Tensor  # (B, 640) 1 for kept rows
    image_latents: torch.Tensor  # (B, N, 64) packed, scaled reference latents (posterior mean)
    latent_ids: torch.Tensor  # (2N, 3) target ids then reference ids (the version's rule)
    height: int  # editing size in pixels (multiples of 16)
    width: int
    source_sizes: list  # (width, height) of each source: outputs are resized back to it
    negative_embeds: torch.Tensor | None = None
    negative_mask: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.embeds.shape[0]

    def index(self, rows: torch.Tensor | Sequence[int]) -> "Step1XConditioning":
        """The conditioning of the given rows (repeat a row to sample a group from one source)."""
        rows = torch.as_tensor(rows, dtype=torch.long).reshape(-1)
        return index_rows(self, rows, {"embeds", "mask", "image_latents", "negative_embeds", "negative_mask"},
                          source_sizes=[self.source_sizes[i] for i in rows.tolist()])

    def repeat_interleave(self, n: int) -> "Step1XConditioning":
        """Each row repeated ``n`` times in place (row order r0, r0, ..., r1, r1, ...)."""
        return self.index(torch.arange(self.batch_size).repeat_interleave(n))


class Step1XTransformer(torch.nn.Module):
    """The connector and the FLUX DiT as one module (what LoRA adapts and the optimiser sees)."""

    def __init__(self, dit: torch.nn.Module, connector: torch.nn.Module):
        super().__init__()
        self.dit = dit
        self.connector = connector

    def forward(self, tokens: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor, mask: torch.Tensor,
                img_ids: torch.Tensor) -> torch.Tensor:
        """Velocity for every token of ``tokens`` (B, L, C) at ``t`` (B,), from Qwen ``embeds`` (B, S, D)."""
        txt, pooled = self.connector(embeds, t, mask)
        txt_ids = torch.zeros(txt.shape[1], 3, device=tokens.device, dtype=img_ids.dtype)
        return self.dit(hidden_states=tokens, encoder_hidden_states=txt, pooled_projections=pooled, timestep=t,
                        img_ids=img_ids, txt_ids=txt_ids, guidance=None, return_dict=False)[0]


class Step1XEditEditor(Editor):
    """An editrl ``Editor`` over Step1X-Edit's DiT + connector, FLUX VAE and Qwen2.5-VL encoder."""

    def __init__(self, transformer: Step1XTransformer, vae: Any, encoder: Any, version: str, *,
                 size_level: int = 512, negative_prompt: str | None = "", default_guidance: float = 6.0,
                 cfg_truncate: float = 0.93):
        if version not in sampler.VERSIONS:
            raise ValueError(f"unknown Step1X-Edit version {version!r}; expected one of {sampler.VERSIONS}")
        self.transformer = transformer
        self.vae = vae
        self.encoder = encoder
        self.version = version
        self.size_level = size_level
        self.negative_prompt = negative_prompt
        self.default_guidance = default_guidance
        self.cfg_truncate = cfg_truncate

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, local_dir: str, dtype: torch.dtype | str = torch.bfloat16, device: str | None = None,
                        axes_dims_rope: Sequence[int] | None = None, connector_heads: int | None = None,
                        dit_file: str | None = None, qwen_path: str | None = None, encoder_variant: str | None = None,
                        **kwargs: Any) -> "Step1XEditEditor":
        """Load an official or diffusers-PR Step1X-Edit folder (layouts in ``rollout.step1x.layout``); arguments
        left unset fall back to the folder's ``step1x_config.json``, then to the release's values."""
        from editrl.io import DataError
        from rollout.step1x import convert, layout
        from rollout.step1x.prompt import Step1XPromptEncoder

        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        files = layout.resolve(local_dir, dit_file=dit_file, qwen_path=qwen_path)
        opts = dict(files.options)
        axes_dims_rope = axes_dims_rope or opts.pop("axes_dims_rope", None)
        connector_heads = connector_heads or opts.pop("connector_heads", None)
        encoder_variant = encoder_variant or opts.pop("encoder_variant", "4.51")
        kwargs = {**{k: v for k, v in opts.items() if k not in ("axes_dims_rope", "connector_heads",
                                                                 "encoder_variant")}, **kwargs}
        if encoder_variant not in ENCODER_VARIANTS:
            raise ValueError(f"encoder_variant must be one of {sorted(ENCODER_VARIANTS)}, got {encoder_variant!r}")
        where = files.dit_files[0]
        dit_state, conn_state = convert.split_connector(layout.load_tensors(files.dit_files))
        version = convert.detect_version({"connector." + k for k in conn_state})
        if files.layout == "official":
            flux_state = convert.official_to_flux(dit_state, where)
            vae = convert.build_vae(layout.load_tensors([files.vae]), dtype, files.vae)
        else:
            from diffusers import AutoencoderKL

            cfg = files.transformer_config
            axes_dims_rope = axes_dims_rope or cfg.get("axes_dims_rope")
            connector_heads = connector_heads or cfg.get("connector_heads_num")
            flux_state = convert.pr_to_flux(dit_state)
            vae = AutoencoderKL.from_pretrained(str(files.vae), dtype=dtype, local_files_only=True,
                                                use_safetensors=True)
        dit = convert.build_flux(flux_state, dtype, tuple(axes_dims_rope) if axes_dims_rope else None, where)
        connector = convert.build_connector(conn_state, connector_heads, dtype, where)
        encoder = Step1XPromptEncoder.from_folders(files.text_encoder, files.processor, dtype, device,
                                                   **ENCODER_VARIANTS[encoder_variant])
        if encoder.hidden_size != connector.S.input_embedder.in_features:
            raise DataError(files.text_encoder, f"Qwen hidden size {encoder.hidden_size} does not match the "
                                                f"connector input {connector.S.input_embedder.in_features}")
        transformer = Step1XTransformer(dit, connector).requires_grad_(False).eval()
        vae.requires_grad_(False).eval()
        if device is not None:
            transformer.to(device)
            vae.to(device)
        return cls(transformer, vae, encoder, version, **kwargs)

    # ------------------------------------------------------------------ conditioning
    def editing_size(self, source: Image.Image) -> tuple[int, int]:
        """``(width, height)`` a source is edited at (the official resize for ``size_level``)."""
        return sampler.input_size(*source.size, self.size_level)

    @torch.no_grad()
    def encode_sources(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Packed, scaled VAE latents (posterior mean) of images already at the editing size."""
        import numpy as np

        pixels = torch.stack([torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()) for im in images])
        pixels = pixels.permute(0, 3, 1, 2).float().div(255).mul(2).sub(1)
        vae = self.vae
        mean = vae.encode(pixels.to(self.device, vae.dtype)).latent_dist.mean
        return sampler.pack((mean - vae.config.shift_factor) * vae.config.scaling_factor)

    @torch.no_grad()
    def prepare(self, sources: Sequence[Any], instructions: Sequence[str]) -> Step1XConditioning:
        """Encode instructions with their sources (Qwen2.5-VL) and the sources (VAE) once; all sources take the
        first source's editing size."""
        if len(sources) != len(instructions):
            raise ValueError(f"prepare: {len(sources)} sources but {len(instructions)} instructions")
        if not sources:
            raise ValueError("prepare: empty batch")
        from editrl.io import load_image

        images = [s.convert("RGB") if isinstance(s, Image.Image) else load_image(s) for s in sources]
        width, height = self.editing_size(images[0])
        resized = [sampler.resize_source(im, (width, height)) for im in images]
        embeds, mask = self.encoder(list(instructions), resized)
        negative = (None, None)
        if self.negative_prompt is not None:
            negative = self.encoder([self.negative_prompt] * len(resized), resized)
        latents = self.encode_sources(resized)
        ids = sampler.image_ids(height // 16, width // 16, self.version).to(self.device)
        return Step1XConditioning(embeds=embeds, mask=mask, image_latents=latents.float(), latent_ids=ids,
                                  height=height, width=width, source_sizes=[im.size for im in images],
                                  negative_embeds=negative[0], negative_mask=negative[1])

    # ------------------------------------------------------------------ sampling pieces
    def initial_latents(self, cond: Step1XConditioning, generator: torch.Generator | None = None) -> torch.Tensor:
        """Packed Gaussian noise (B, N, 64): ``randn(B, 16, H/8, W/8)`` packed."""
        from diffusers.utils.torch_utils import randn_tensor

        c = self.transformer.dit.config.in_channels // 4
        shape = (cond.batch_size, c, cond.height // 8, cond.width // 8)
        return sampler.pack(randn_tensor(shape, generator=generator, device=self.device, dtype=torch.float32))

    def sigmas(self, num_steps: int, cond: Step1XConditioning) -> torch.Tensor:
        """The official schedule for the target's token count (N+1,)."""
        return sampler.time_shift_schedule(num_steps, (cond.height // 16) * (cond.width // 16)).to(self.device)

    def velocity(self, latents: torch.Tensor, sigma: float | torch.Tensor, cond: Step1XConditioning,
                 guidance: float | None = None) -> torch.Tensor:
        """Guided velocity (fp32) for packed ``latents`` (B, N, 64) at ``sigma`` (float or (B,)); keeps gradients."""
        b, n = latents.shape[:2]
        scale = self.default_guidance if guidance is None else guidance
        sigma_t = torch.as_tensor(sigma, dtype=torch.float32, device=latents.device).reshape(-1).expand(b)
        guided = scale > 1.0
        if guided and cond.negative_embeds is None:
            raise ValueError("guidance > 1 needs a negative prompt: construct the editor with negative_prompt=...")
        embeds, mask = cond.embeds, cond.mask
        if guided:
            embeds, mask = torch.cat([embeds, cond.negative_embeds]), torch.cat([mask, cond.negative_mask])
        reps = 2 if guided else 1
        dtype = self.dtype
        tokens = torch.cat([latents.to(dtype), cond.image_latents.to(latents.device, dtype)], dim=1).repeat(reps, 1, 1)
        pred = self.transformer(tokens, sigma_t.repeat(reps).to(dtype), embeds.to(dtype), mask,
                                cond.latent_ids)[:, :n].float()
        if not guided:
            return pred
        return sampler.guided_velocity(pred[:b], pred[b:], scale, sigma_t, self.cfg_truncate)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, cond: Step1XConditioning, output_type: str = "pil") -> Any:
        """``pil``: images resized back to each source's size; ``pt``: (B, 3, H, W) in [0, 1] at the editing size."""
        if output_type not in ("pil", "pt"):
            raise ValueError(f"output_type must be 'pil' or 'pt', got {output_type!r}")
        vae = self.vae
        z = sampler.unpack(latents.float(), cond.height, cond.width)
        z = z / vae.config.scaling_factor + vae.config.shift_factor
        pixels = vae.decode(z.to(vae.dtype), return_dict=False)[0].float().clamp(-1, 1).mul(0.5).add(0.5)
        if output_type == "pt":
            return pixels
        arrays = pixels.mul(255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(a).resize(size) for a, size in zip(arrays, cond.source_sizes)]

    # ------------------------------------------------------------------ LoRA (the module is not a diffusers model)
    def add_lora(self, rank: int = 32, alpha: int = 64, target_modules: Sequence[str] | None = None,
                 dropout: float = 0.0, adapter_name: str = "default") -> list[torch.nn.Parameter]:
        """Attach a peft LoRA adapter (DiT attention by default); freezes the base weights, returns the LoRA
        parameters."""
        from peft import LoraConfig, inject_adapter_in_model

        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, init_lora_weights="gaussian",
                            target_modules=list(target_modules or DEFAULT_LORA_TARGETS))
        self.transformer.requires_grad_(False)
        inject_adapter_in_model(config, self.transformer, adapter_name=adapter_name)
        return [p for n, p in self.transformer.named_parameters() if "lora_" in n and p.requires_grad]

    @contextmanager
    def reference(self) -> Iterator[None]:
        """Within the context the adapters are off (the KL reference model)."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        layers = [m for m in self.transformer.modules() if isinstance(m, BaseTunerLayer)]
        for m in layers:
            m.enable_adapters(False)
        try:
            yield
        finally:
            for m in layers:
                m.enable_adapters(True)
