"""FLUX.1-Kontext behind editrl's ``Editor`` interface, built from a diffusers ``FluxKontextPipeline``.

The adapter reuses the pipeline's components and helpers (prompt encoding with CLIP + T5, VAE encoding of the
source, latent packing, the ``FlowMatchEulerDiscreteScheduler`` schedule with resolution-dependent shift
``mu``, VAE decoding); only the denoising loop is editrl's own, so that every step can be an SDE step with a
recorded log-probability. With ``noise_level=0`` it reproduces ``FluxKontextPipeline.__call__`` (same seed,
steps and guidance, ``_auto_resize=False``, ``max_area = height * width``).

Conditioning, as in the pipeline: the packed VAE latents of the source image are appended to the noisy
latent tokens; their position ids carry a 1 in the first coordinate (the output tokens carry 0), and the
transformer's prediction for the source tokens is discarded. ``guidance`` is FLUX's distilled guidance
(the ``guidance`` embedding, 2.5 by default for Kontext-dev); no true CFG is run unless ``true_cfg > 1``.

Checkpoint layout expected by ``FluxKontextEditor.from_pretrained(local_dir)`` (the diffusers layout of
``FLUX.1-Kontext-dev``, safetensors weights)::

    local_dir/
      model_index.json          "_class_name": "FluxKontextPipeline"
      scheduler/                scheduler_config.json (FlowMatchEulerDiscreteScheduler, dynamic shifting)
      text_encoder/             CLIPTextModel (config.json + *.safetensors)
      tokenizer/                CLIPTokenizer (vocab.json, merges.txt)
      text_encoder_2/           T5EncoderModel
      tokenizer_2/              T5 tokenizer (tokenizer.json / spiece.model)
      transformer/              FluxTransformer2DModel (guidance_embeds: true)
      vae/                      AutoencoderKL (16 latent channels, scaling/shift factors)
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from PIL import Image

from rollout.editor import index_rows

KONTEXT_COMPONENTS = ("scheduler", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "transformer", "vae")


@dataclass
class KontextConditioning:
    """Everything the denoiser needs for a batch of (source, instruction) rows; tensors have batch dim first."""

    prompt_embeds: torch.Tensor  # (B, S, D) T5 hidden states
    pooled_prompt_embeds: torch.Tensor  # (B, P) CLIP pooled output
    text_ids: torch.Tensor  # (S, 3) zeros
    image_latents: torch.Tensor  # (B, L_src, C*4) packed source latents
    latent_ids: torch.Tensor  # (L_out + L_src, 3) output ids then source ids (first coordinate 1)
    height: int  # output size in pixels
    width: int
    negative_prompt_embeds: torch.Tensor | None = None
    negative_pooled_prompt_embeds: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.prompt_embeds.shape[0]

    def index(self, rows: torch.Tensor | Sequence[int]) -> "KontextConditioning":
        """The conditioning of the given rows (repeat a row to sample a group from one source)."""
        return index_rows(self, rows, {"prompt_embeds", "pooled_prompt_embeds", "image_latents",
                                       "negative_prompt_embeds", "negative_pooled_prompt_embeds"})

    def repeat_interleave(self, n: int) -> "KontextConditioning":
        """Each row repeated ``n`` times in place (row order r0, r0, ..., r1, r1, ...)."""
        return self.index(torch.arange(self.batch_size).repeat_interleave(n))


@dataclass
class PipelineTrajectory:
    """A sampled denoising path: latents (B, T+1, L, C), sigmas (T+1,), log_probs (B, T), means (B, T, L, C)."""

    latents: torch.Tensor
    sigmas: torch.Tensor
    log_probs: torch.Tensor
    means: torch.Tensor


@dataclass
class PipelineEditSample:
    """Decoded edits plus, when asked for, the trajectory that produced them."""

    images: list
    trajectory: PipelineTrajectory | None = None


DEFAULT_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")


class DiffusersEditorBase:
    """Sampling, LoRA and the reference model for adapters that provide ``prepare``, ``initial_latents``,
    ``sigmas``, ``velocity`` and ``decode`` over packed latents (FLUX.1-Kontext, Qwen-Image-Edit).

    Each step is ``rollout.sde.sde_step_with_logprob`` in fp32; with
    ``noise_level == 0`` it is the plain Euler step of ``FlowMatchEulerDiscreteScheduler`` and the recorded
    log-probabilities are 0 (a deterministic step has no density).
    """

    transformer: torch.nn.Module
    default_guidance: float

    @torch.no_grad()
    def sample(self, cond: Any, num_steps: int, noise_level: float = 0.0, guidance: float | None = None,
               generator: torch.Generator | None = None, return_trajectory: bool = False,
               sde_steps: Sequence[int] | None = None, output_type: str = "pil",
               initial: torch.Tensor | None = None) -> PipelineEditSample:
        """One edit per conditioning row (``cond.repeat_interleave(n)`` for groups); with ``noise_level`` > 0 the
        steps in ``sde_steps`` (all when None) are SDE steps, the others ODE steps with log-probability 0.
        ``initial``: the starting noise instead of a fresh draw (e.g. one draw shared by a GRPO group)."""
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        x = (self.initial_latents(cond, generator) if initial is None else initial.to(self.device)).float()
        sigmas = self.sigmas(num_steps, cond).float()
        states, means, log_probs = [x], [], []
        for i in range(num_steps):
            v = self.velocity(x, sigmas[i], cond, guidance=guidance).float()
            if noise_level > 0 and (sde_steps is None or i in sde_steps):
                from rollout.sde import sde_step_with_logprob

                x, logp, mean, _ = sde_step_with_logprob(v, x, sigmas[i], sigmas[i + 1], noise_level,
                                                         generator=generator)
                x, mean = x.float(), mean.float()
            else:
                x = mean = x + (sigmas[i + 1] - sigmas[i]) * v
                logp = torch.zeros(x.shape[0], device=x.device)
            states.append(x)
            means.append(mean)
            log_probs.append(logp.float())
        images = self.decode(x, cond, output_type=output_type)
        trajectory = None
        if return_trajectory:
            trajectory = PipelineTrajectory(latents=torch.stack(states, 1), sigmas=sigmas,
                                            log_probs=torch.stack(log_probs, 1), means=torch.stack(means, 1))
        return PipelineEditSample(images=images, trajectory=trajectory)

    def add_lora(self, rank: int = 32, alpha: int = 64, target_modules: Sequence[str] | None = None,
                 dropout: float = 0.0, adapter_name: str = "default") -> list[torch.nn.Parameter]:
        """Attach a peft LoRA adapter to the transformer; freezes the base weights, returns the LoRA params."""
        from peft import LoraConfig

        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, init_lora_weights="gaussian",
                            target_modules=list(target_modules or DEFAULT_LORA_TARGETS))
        self.transformer.requires_grad_(False)
        self.transformer.add_adapter(config, adapter_name=adapter_name)
        return [p for n, p in self.transformer.named_parameters() if "lora_" in n and p.requires_grad]

    @contextmanager
    def reference(self) -> Iterator[None]:
        """Within the context the transformer runs without its LoRA adapter (the KL reference model)."""
        self.transformer.disable_adapters()
        try:
            yield
        finally:
            self.transformer.enable_adapters()


def _as_pil(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    from editrl.io import load_image

    return load_image(image)


class FluxKontextEditor(DiffusersEditorBase):
    """An editrl ``Editor`` over a ``FluxKontextPipeline``'s components.

    ``resolution``: output area ``resolution**2`` at the source's aspect ratio (as the pipeline's ``max_area``);
    ``None`` keeps the source size (rounded down to a multiple of 16). All sources of one ``prepare`` call are
    resized to the first source's size so the batch shares one token grid. ``auto_resize`` snaps the source to
    Kontext's preferred resolutions, as the pipeline does by default.
    """

    def __init__(self, pipeline: Any, *, resolution: int | None = None, max_sequence_length: int = 512,
                 auto_resize: bool = False, negative_prompt: str | None = None, default_guidance: float = 2.5,
                 true_cfg: float = 1.0):
        self.pipeline = pipeline
        self.resolution = resolution
        self.max_sequence_length = max_sequence_length
        self.auto_resize = auto_resize
        self.negative_prompt = negative_prompt
        self.default_guidance = default_guidance
        self.true_cfg = true_cfg
        # a private scheduler copy: set_timesteps mutates state and the pipeline may be shared
        self.scheduler = copy.deepcopy(pipeline.scheduler)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, local_dir: str, dtype: torch.dtype | str = torch.bfloat16, device: str | None = None,
                        **kwargs: Any) -> "FluxKontextEditor":
        """Load a local FLUX.1-Kontext diffusers folder (layout in the module docstring); never the hub."""
        from diffusers import FluxKontextPipeline

        from rollout.pipeline_folders import check_pipeline_folder

        folder = check_pipeline_folder(local_dir, "FluxKontextPipeline", KONTEXT_COMPONENTS)
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        pipeline = FluxKontextPipeline.from_pretrained(str(folder), dtype=dtype, local_files_only=True,
                                                       use_safetensors=True)
        if device is not None:
            pipeline.to(device)
        pipeline.set_progress_bar_config(disable=True)
        return cls(pipeline, **kwargs)

    @property
    def transformer(self) -> torch.nn.Module:
        return self.pipeline.transformer

    @property
    def device(self) -> torch.device:
        return self.pipeline.transformer.device

    @property
    def dtype(self) -> torch.dtype:
        return self.pipeline.transformer.dtype

    # ------------------------------------------------------------------ conditioning
    def _output_size(self, source: Image.Image) -> tuple[int, int]:
        multiple = self.pipeline.vae_scale_factor * 2
        if self.resolution is None:
            height, width = self.pipeline.image_processor.get_default_height_width(source)
        else:
            aspect = source.width / source.height
            area = self.resolution ** 2
            width, height = round((area * aspect) ** 0.5), round((area / aspect) ** 0.5)
        return height // multiple * multiple, width // multiple * multiple

    def _source_size(self, source: Image.Image) -> tuple[int, int]:
        from diffusers.pipelines.flux.pipeline_flux_kontext import PREFERRED_KONTEXT_RESOLUTIONS

        multiple = self.pipeline.vae_scale_factor * 2
        height, width = self.pipeline.image_processor.get_default_height_width(source)
        if self.auto_resize:
            aspect = width / height
            _, width, height = min((abs(aspect - w / h), w, h) for w, h in PREFERRED_KONTEXT_RESOLUTIONS)
        return height // multiple * multiple, width // multiple * multiple

    @torch.no_grad()
    def encode_sources(self, sources: Sequence[Image.Image]) -> torch.Tensor:
        """Packed, scaled VAE latents of the source images (all resized to the first one's size)."""
        pipe = self.pipeline
        height, width = self._source_size(sources[0])
        images = [pipe.image_processor.resize(s, height, width) for s in sources]
        pixels = pipe.image_processor.preprocess(images, height, width).to(self.device, pipe.vae.dtype)
        latents = pipe._encode_vae_image(image=pixels, generator=None)  # mode of the posterior: deterministic
        b, c, h, w = latents.shape
        return pipe._pack_latents(latents, b, c, h, w)

    @torch.no_grad()
    def prepare(self, sources: Sequence[Any], instructions: Sequence[str]) -> KontextConditioning:
        """Encode instructions (CLIP + T5) and sources (VAE) once; reuse the result for every sample."""
        if len(sources) != len(instructions):
            raise ValueError(f"prepare: {len(sources)} sources but {len(instructions)} instructions")
        if not sources:
            raise ValueError("prepare: empty batch")
        pipe, device = self.pipeline, self.device
        images = [_as_pil(s) for s in sources]
        height, width = self._output_size(images[0])
        prompt_embeds, pooled, text_ids = pipe.encode_prompt(
            prompt=list(instructions), prompt_2=None, device=device, max_sequence_length=self.max_sequence_length)
        negative = (None, None)
        if self.negative_prompt is not None:
            neg_embeds, neg_pooled, _ = pipe.encode_prompt(
                prompt=[self.negative_prompt] * len(images), prompt_2=None, device=device,
                max_sequence_length=self.max_sequence_length)
            negative = (neg_embeds, neg_pooled)
        image_latents = self.encode_sources(images)
        src_h, src_w = self._source_size(images[0])
        scale = pipe.vae_scale_factor * 2
        image_ids = pipe._prepare_latent_image_ids(None, src_h // scale, src_w // scale, device, prompt_embeds.dtype)
        image_ids[..., 0] = 1
        out_ids = pipe._prepare_latent_image_ids(None, height // scale, width // scale, device, prompt_embeds.dtype)
        return KontextConditioning(
            prompt_embeds=prompt_embeds, pooled_prompt_embeds=pooled, text_ids=text_ids,
            image_latents=image_latents.to(prompt_embeds.dtype), latent_ids=torch.cat([out_ids, image_ids], dim=0),
            height=height, width=width, negative_prompt_embeds=negative[0], negative_pooled_prompt_embeds=negative[1])

    # ------------------------------------------------------------------ sampling pieces
    def latent_shape(self, cond: KontextConditioning) -> tuple[int, int, int]:
        """Unpacked latent shape ``(C, h, w)`` of one output image."""
        scale = self.pipeline.vae_scale_factor
        return (self.transformer.config.in_channels // 4, 2 * (cond.height // (scale * 2)),
                2 * (cond.width // (scale * 2)))

    def initial_latents(self, cond: KontextConditioning, generator: torch.Generator | None = None) -> torch.Tensor:
        """Packed Gaussian noise (B, L, C*4), drawn exactly as the pipeline's ``prepare_latents`` draws it."""
        from diffusers.utils.torch_utils import randn_tensor

        c, h, w = self.latent_shape(cond)
        b = cond.batch_size
        noise = randn_tensor((b, c, h, w), generator=generator, device=self.device, dtype=cond.prompt_embeds.dtype)
        return self.pipeline._pack_latents(noise, b, c, h, w)

    def sigmas(self, num_steps: int, cond: KontextConditioning) -> torch.Tensor:
        """The pipeline's schedule: ``linspace(1, 1/N, N)`` shifted by ``mu(seq_len)``, then a final 0 (N+1,)."""
        import numpy as np
        from diffusers.pipelines.flux.pipeline_flux_kontext import calculate_shift

        c, h, w = self.latent_shape(cond)
        cfg = self.scheduler.config
        mu = calculate_shift((h // 2) * (w // 2), cfg.get("base_image_seq_len", 256),
                             cfg.get("max_image_seq_len", 4096), cfg.get("base_shift", 0.5),
                             cfg.get("max_shift", 1.15))
        self.scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / num_steps, num_steps), device=self.device, mu=mu)
        return self.scheduler.sigmas.clone()

    def velocity(self, latents: torch.Tensor, sigma: float | torch.Tensor, cond: KontextConditioning,
                 guidance: float | None = None, true_cfg: float | None = None) -> torch.Tensor:
        """Transformer velocity for packed ``latents`` (B, L, C*4) at noise level ``sigma`` (float or (B,)).

        Differentiable (no ``no_grad``) so GRPO can recompute it with gradients; returns the model's dtype.
        """
        b = latents.shape[0]
        dtype = self.dtype
        hidden = torch.cat([latents.to(dtype), cond.image_latents.to(dtype)], dim=1)
        sigma_t = torch.as_tensor(sigma, device=latents.device, dtype=torch.float32)
        # the pipeline passes (sigma * 1000) cast to the latent dtype, divided by 1000
        timestep = (sigma_t * 1000).expand(b).to(dtype) / 1000
        guidance_scale = self.default_guidance if guidance is None else guidance
        g = (torch.full((b,), guidance_scale, device=latents.device, dtype=torch.float32)
             if self.transformer.config.guidance_embeds else None)

        def run(embeds: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
            out = self.transformer(hidden_states=hidden, timestep=timestep, guidance=g, pooled_projections=pooled,
                                   encoder_hidden_states=embeds, txt_ids=cond.text_ids, img_ids=cond.latent_ids,
                                   return_dict=False)[0]
            return out[:, : latents.shape[1]]

        v = run(cond.prompt_embeds, cond.pooled_prompt_embeds)
        true_cfg = self.true_cfg if true_cfg is None else true_cfg
        if true_cfg > 1.0:
            if cond.negative_prompt_embeds is None:
                raise ValueError("true_cfg > 1 needs a negative prompt: construct the editor with negative_prompt=...")
            v_neg = run(cond.negative_prompt_embeds, cond.negative_pooled_prompt_embeds)
            v = v_neg + true_cfg * (v - v_neg)
        return v

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, cond: KontextConditioning, output_type: str = "pil") -> Any:
        """Packed latents -> images (PIL list by default), through the VAE as the pipeline decodes."""
        pipe = self.pipeline
        unpacked = pipe._unpack_latents(latents.to(pipe.vae.dtype), cond.height, cond.width, pipe.vae_scale_factor)
        unpacked = unpacked / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
        pixels = pipe.vae.decode(unpacked, return_dict=False)[0]
        return pipe.image_processor.postprocess(pixels, output_type=output_type)
