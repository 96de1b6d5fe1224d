"""Qwen-Image-Edit behind editrl's ``Editor`` interface, built from a diffusers ``QwenImageEditPipeline``.

The adapter reuses the pipeline's components and helpers: the instruction is encoded by the Qwen2.5-VL text
encoder *with the source image in the prompt* (the pipeline's chat template and ``encode_prompt``), the source
is also VAE-encoded (``AutoencoderKLQwenImage``, per-channel mean/std normalisation) and its packed latents are
appended to the noisy latent tokens, with ``img_shapes`` telling the transformer's RoPE both grids. The
schedule is the pipeline's (``linspace(1, 1/N, N)`` shifted by ``mu(seq_len)`` through the checkpoint's
``FlowMatchEulerDiscreteScheduler`` config, including ``shift_terminal``). ``guidance`` is true
classifier-free guidance against ``negative_prompt`` (default ``" "``) with the pipeline's norm rescaling;
``guidance <= 1`` runs the conditional branch only. Only the denoising loop is editrl's, so each step can be an
SDE step with a log-probability; with ``noise_level=0`` it reproduces ``QwenImageEditPipeline.__call__``
(same seed, steps, ``true_cfg_scale`` and negative prompt).

Source size: the pipeline resizes every source to about 1024x1024 pixels of area at the source's aspect
ratio (``calculate_dimensions``); ``resolution`` changes that area to ``resolution**2``. The output has the
same size unless ``height``/``width`` are given. All sources of one ``prepare`` call take the first source's
size.

Checkpoint layout expected by ``QwenImageEditEditor.from_pretrained(local_dir)`` (the diffusers layout of
``Qwen-Image-Edit``, safetensors weights)::

    local_dir/
      model_index.json          "_class_name": "QwenImageEditPipeline"
      scheduler/                scheduler_config.json (FlowMatchEulerDiscreteScheduler, dynamic shifting)
      text_encoder/             Qwen2_5_VLForConditionalGeneration
      tokenizer/                Qwen2Tokenizer (vocab.json, merges.txt, ...)
      processor/                Qwen2VLProcessor / Qwen2_5_VLProcessor (tokenizer + Qwen2VL image processor)
      transformer/              QwenImageTransformer2DModel
      vae/                      AutoencoderKLQwenImage (latents_mean / latents_std in its config)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from PIL import Image

from rollout.editor import index_rows
from rollout.flux_kontext import DiffusersEditorBase

QWEN_EDIT_COMPONENTS = ("scheduler", "text_encoder", "tokenizer", "processor", "transformer", "vae")


@dataclass
class QwenEditConditioning:
    """Everything the denoiser needs for a batch of (source, instruction) rows; tensors have batch dim first."""

    prompt_embeds: torch.Tensor  # (B, S, D) last hidden states of the VL encoder (template prefix dropped)
    prompt_embeds_mask: torch.Tensor | None  # (B, S) or None when no row is padded
    image_latents: torch.Tensor  # (B, L_src, C*4) packed, normalised source latents
    height: int  # output size in pixels
    width: int
    source_height: int  # size the source was resized to
    source_width: int
    negative_prompt_embeds: torch.Tensor | None = None
    negative_prompt_embeds_mask: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.prompt_embeds.shape[0]

    def index(self, rows: torch.Tensor | Sequence[int]) -> "QwenEditConditioning":
        """The conditioning of the given rows (repeat a row to sample a group from one source)."""
        return index_rows(self, rows, {"prompt_embeds", "prompt_embeds_mask", "image_latents",
                                       "negative_prompt_embeds", "negative_prompt_embeds_mask"})

    def repeat_interleave(self, n: int) -> "QwenEditConditioning":
        """Each row repeated ``n`` times in place (row order r0, r0, ..., r1, r1, ...)."""
        return self.index(torch.arange(self.batch_size).repeat_interleave(n))


def _as_pil(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    from editrl.io import load_image

    return load_image(image)


def _all_valid_to_none(mask: torch.Tensor | None) -> torch.Tensor | None:
    return None if mask is None or bool(mask.all()) else mask


class QwenImageEditEditor(DiffusersEditorBase):
    """An editrl ``Editor`` over a ``QwenImageEditPipeline``'s components."""

    def __init__(self, pipeline: Any, *, resolution: int | None = None, height: int | None = None,
                 width: int | None = None, negative_prompt: str | None = " ", default_guidance: float = 4.0):
        self.pipeline = pipeline
        self.resolution = resolution
        self.height, self.width = height, width
        self.negative_prompt = negative_prompt
        self.default_guidance = default_guidance
        self.scheduler = copy.deepcopy(pipeline.scheduler)

    @classmethod
    def from_pretrained(cls, local_dir: str, dtype: torch.dtype | str = torch.bfloat16, device: str | None = None,
                        **kwargs: Any) -> "QwenImageEditEditor":
        """Load a local Qwen-Image-Edit diffusers folder (layout in the module docstring); never the hub."""
        from diffusers import QwenImageEditPipeline

        from rollout.pipeline_folders import check_pipeline_folder

        folder = check_pipeline_folder(local_dir, "QwenImageEditPipeline", QWEN_EDIT_COMPONENTS)
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        pipeline = QwenImageEditPipeline.from_pretrained(str(folder), dtype=dtype, local_files_only=True,
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
    def _source_size(self, source: Image.Image) -> tuple[int, int]:
        from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit

        area = 1024 * 1024 if self.resolution is None else self.resolution ** 2
        width, height, _ = pipeline_qwenimage_edit.calculate_dimensions(area, source.width / source.height)
        return height, width

    def _output_size(self, source_hw: tuple[int, int]) -> tuple[int, int]:
        multiple = self.pipeline.vae_scale_factor * 2
        height = self.height or source_hw[0]
        width = self.width or source_hw[1]
        return height // multiple * multiple, width // multiple * multiple

    @torch.no_grad()
    def prepare(self, sources: Sequence[Any], instructions: Sequence[str]) -> QwenEditConditioning:
        """Encode (source, instruction) with the VL encoder and the sources with the VAE, once per batch."""
        if len(sources) != len(instructions):
            raise ValueError(f"prepare: {len(sources)} sources but {len(instructions)} instructions")
        if not sources:
            raise ValueError("prepare: empty batch")
        pipe, device = self.pipeline, self.device
        images = [_as_pil(s) for s in sources]
        src_h, src_w = self._source_size(images[0])
        height, width = self._output_size((src_h, src_w))
        resized = [pipe.image_processor.resize(im, src_h, src_w) for im in images]
        embeds, mask = pipe.encode_prompt(prompt=list(instructions), image=resized, device=device)
        neg_embeds = neg_mask = None
        if self.negative_prompt is not None:
            neg_embeds, neg_mask = pipe.encode_prompt(prompt=[self.negative_prompt] * len(images), image=resized,
                                                      device=device)
        pixels = pipe.image_processor.preprocess(resized, src_h, src_w).unsqueeze(2)
        latents = pipe._encode_vae_image(image=pixels.to(device, pipe.vae.dtype), generator=None)
        b, c, _, h, w = latents.shape
        image_latents = pipe._pack_latents(latents, b, c, h, w).to(embeds.dtype)
        return QwenEditConditioning(
            prompt_embeds=embeds, prompt_embeds_mask=mask, image_latents=image_latents, height=height, width=width,
            source_height=src_h, source_width=src_w, negative_prompt_embeds=neg_embeds,
            negative_prompt_embeds_mask=neg_mask)

    # ------------------------------------------------------------------ sampling pieces
    def latent_shape(self, cond: QwenEditConditioning) -> tuple[int, int, int]:
        """Unpacked latent shape ``(C, h, w)`` of one output image (the VAE's single frame dimension dropped)."""
        scale = self.pipeline.vae_scale_factor
        return (self.transformer.config.in_channels // 4, 2 * (cond.height // (scale * 2)),
                2 * (cond.width // (scale * 2)))

    def initial_latents(self, cond: QwenEditConditioning, generator: torch.Generator | None = None) -> torch.Tensor:
        """Packed Gaussian noise (B, L, C*4), drawn exactly as the pipeline's ``prepare_latents`` draws it."""
        from diffusers.utils.torch_utils import randn_tensor

        c, h, w = self.latent_shape(cond)
        b = cond.batch_size
        noise = randn_tensor((b, 1, c, h, w), generator=generator, device=self.device,
                             dtype=cond.prompt_embeds.dtype)
        return self.pipeline._pack_latents(noise, b, c, h, w)

    def sigmas(self, num_steps: int, cond: QwenEditConditioning) -> torch.Tensor:
        """The pipeline's schedule for this output size, with the final 0: shape (N+1,)."""
        import numpy as np
        from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit import calculate_shift

        _, h, w = self.latent_shape(cond)
        cfg = self.scheduler.config
        mu = calculate_shift((h // 2) * (w // 2), cfg.get("base_image_seq_len", 256),
                             cfg.get("max_image_seq_len", 4096), cfg.get("base_shift", 0.5),
                             cfg.get("max_shift", 1.15))
        self.scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / num_steps, num_steps), device=self.device, mu=mu)
        return self.scheduler.sigmas.clone()

    def _img_shapes(self, cond: QwenEditConditioning, batch: int) -> list[list[tuple[int, int, int]]]:
        s = self.pipeline.vae_scale_factor * 2
        return [[(1, cond.height // s, cond.width // s), (1, cond.source_height // s, cond.source_width // s)]] * batch

    def velocity(self, latents: torch.Tensor, sigma: float | torch.Tensor, cond: QwenEditConditioning,
                 guidance: float | None = None) -> torch.Tensor:
        """Velocity for packed ``latents`` (B, L, C*4) at ``sigma`` (float or (B,)), with true CFG when
        ``guidance > 1`` (the pipeline's combination and norm rescale). Differentiable; model dtype."""
        b = latents.shape[0]
        dtype = self.dtype
        hidden = torch.cat([latents.to(dtype), cond.image_latents.to(dtype)], dim=1)
        sigma_t = torch.as_tensor(sigma, device=latents.device, dtype=torch.float32)
        timestep = (sigma_t * 1000).expand(b).to(dtype) / 1000
        img_shapes = self._img_shapes(cond, b)
        scale = self.default_guidance if guidance is None else guidance

        def run(embeds: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
            out = self.transformer(hidden_states=hidden, timestep=timestep, guidance=None,
                                   encoder_hidden_states_mask=_all_valid_to_none(mask),
                                   encoder_hidden_states=embeds, img_shapes=img_shapes, return_dict=False)[0]
            return out[:, : latents.shape[1]]

        v = run(cond.prompt_embeds, cond.prompt_embeds_mask)
        if scale > 1.0:
            if cond.negative_prompt_embeds is None:
                raise ValueError("guidance > 1 needs a negative prompt: construct the editor with negative_prompt")
            v_neg = run(cond.negative_prompt_embeds, cond.negative_prompt_embeds_mask)
            combined = v_neg + scale * (v - v_neg)
            v = combined * (torch.norm(v, dim=-1, keepdim=True) / torch.norm(combined, dim=-1, keepdim=True))
        return v

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, cond: QwenEditConditioning, output_type: str = "pil") -> Any:
        """Packed latents -> images (PIL list by default), de-normalised and decoded as the pipeline does."""
        pipe = self.pipeline
        vae = pipe.vae
        unpacked = pipe._unpack_latents(latents, cond.height, cond.width, pipe.vae_scale_factor).to(vae.dtype)
        z = vae.config.z_dim
        mean = torch.tensor(vae.config.latents_mean).view(1, z, 1, 1, 1).to(unpacked.device, unpacked.dtype)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, z, 1, 1, 1).to(unpacked.device, unpacked.dtype)
        pixels = vae.decode(unpacked / inv_std + mean, return_dict=False)[0][:, :, 0]
        return pipe.image_processor.postprocess(pixels, output_type=output_type)
