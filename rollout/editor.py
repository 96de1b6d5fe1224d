"""The ``Editor`` interface every editrl editor implements (tiny editworld editor, FLUX.1-Kontext, Qwen-Image-Edit).

An editor turns (source image, instruction) rows into edited images by integrating a flow-matching ODE/SDE over
*packed latents* (B, L, C). What differs between editors is small and lives in five methods:

- ``prepare(sources, instructions) -> conditioning``: encode each (source, instruction) once; the result has
  ``.batch_size``, ``.index(rows)`` and ``.repeat_interleave(n)`` (a group of ``n`` samples per row);
- ``initial_latents(cond, generator)``: the Gaussian noise the sampler starts from;
- ``sigmas(num_steps, cond)``: the (T+1,) schedule from 1 down to 0;
- ``velocity(latents, sigma, cond, guidance=None)``: the model output, differentiable (GRPO recomputes it);
- ``decode(latents, cond, output_type="pil")``: latents -> images.

Everything else is shared: ``sample`` runs the one denoising loop in ``rollout.sampling`` (SDE steps with
log-probabilities, ``rollout.sde``), ``add_lora`` attaches a peft adapter to ``transformer`` and
``reference()`` disables it (the KL reference model). Trajectory layout: latents (B, T+1, L, C), sigmas (T+1,),
log_probs (B, T), means (B, T, L, C), stds (T,).
"""

from __future__ import annotations

import abc
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Any, Iterator, Protocol, Sequence

import torch

from rollout.sampling import Trajectory, run_sampler

DEFAULT_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")



def index_rows(cond: Any, rows: torch.Tensor | Sequence[int], batched: set[str], **extra: Any) -> Any:
    """A copy of the dataclass ``cond`` holding only ``rows`` (repeats allowed) of its ``batched`` tensor fields
    (each indexed on its own device; None stays None), the other fields kept, ``extra`` replacing fields: what
    every editor's conditioning ``index`` does."""
    rows = torch.as_tensor(rows, dtype=torch.long).reshape(-1)
    picked = {f.name: getattr(cond, f.name)[rows.to(getattr(cond, f.name).device)] for f in fields(cond)
              if f.name in batched and getattr(cond, f.name) is not None}
    return replace(cond, **picked, **extra)

class Conditioning(Protocol):
    """What ``Editor.prepare`` returns: per-row tensors (batch first) that can be re-indexed for groups."""

    @property
    def batch_size(self) -> int: ...

    def index(self, rows: torch.Tensor | Sequence[int]) -> "Conditioning": ...

    def repeat_interleave(self, n: int) -> "Conditioning": ...


@dataclass
class EditSample:
    """Decoded edits, the final latents, and (when asked for) the trajectory that produced them."""

    images: list
    latents_final: torch.Tensor | None = None
    trajectory: Trajectory | None = None


class Editor(abc.ABC):
    """Base class of editrl editors: subclasses supply conditioning, schedule, velocity and decoding."""

    transformer: torch.nn.Module  # the denoiser; LoRA adapters attach here
    default_guidance: float | None = None  # used when ``sample(guidance=None)``

    # ------------------------------------------------------------------ what an editor supplies
    @abc.abstractmethod
    def prepare(self, sources: Sequence[Any], instructions: Sequence[str]) -> Conditioning:
        """Encode (source, instruction) rows once; reuse via ``.index`` / ``.repeat_interleave`` for groups."""

    @abc.abstractmethod
    def initial_latents(self, cond: Conditioning, generator: torch.Generator | None = None) -> torch.Tensor:
        """Packed Gaussian noise (B, L, C) to start sampling from."""

    @abc.abstractmethod
    def sigmas(self, num_steps: int, cond: Conditioning) -> torch.Tensor:
        """The (num_steps + 1,) noise schedule, 1 (or near it) down to 0."""

    @abc.abstractmethod
    def velocity(self, latents: torch.Tensor, sigma: float | torch.Tensor, cond: Conditioning,
                 guidance: float | None = None) -> torch.Tensor:
        """Model velocity for packed ``latents`` at noise level ``sigma`` (float or (B,)); keeps gradients."""

    @abc.abstractmethod
    def decode(self, latents: torch.Tensor, cond: Conditioning, output_type: str = "pil") -> Any:
        """Final packed latents -> images (a list of PIL images for ``output_type="pil"``)."""

    # ------------------------------------------------------------------ shared behaviour
    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    @torch.no_grad()
    def sample(self, cond: Conditioning, num_steps: int, noise_level: float = 0.0, guidance: float | None = None,
               generator: torch.Generator | None = None, return_trajectory: bool = False,
               sde_steps: Sequence[int] | None = None, output_type: str = "pil",
               initial: torch.Tensor | None = None) -> EditSample:
        """One edit per conditioning row (use ``cond.repeat_interleave(n)`` for groups of ``n``).

        ``noise_level`` 0 is deterministic ODE sampling (evaluation); > 0 takes Flow-GRPO SDE steps, all of them
        or only those listed in ``sde_steps`` (the rest are ODE steps with log-probability 0). ``initial``: the
        starting noise (B, L, C) instead of a fresh draw (e.g. one draw shared by a GRPO group).
        """
        g = self.default_guidance if guidance is None else guidance
        x0 = self.initial_latents(cond, generator) if initial is None else initial.to(self.device)
        sigmas = self.sigmas(num_steps, cond)
        final, trajectory = run_sampler(lambda x, s: self.velocity(x, s, cond, guidance=g), x0, sigmas,
                                        noise_level=noise_level, generator=generator, sde_steps=sde_steps,
                                        record=return_trajectory)
        images = self.decode(final, cond, output_type=output_type)
        return EditSample(images=images, latents_final=final, trajectory=trajectory)

    def add_lora(self, rank: int = 32, alpha: int = 64, target_modules: Sequence[str] | None = None,
                 dropout: float = 0.0, adapter_name: str = "default") -> list[torch.nn.Parameter]:
        """Attach a peft LoRA adapter to ``transformer``; freezes the base weights, returns the LoRA parameters."""
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
