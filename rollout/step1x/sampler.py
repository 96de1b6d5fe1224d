"""The official Step1X-Edit sampling arithmetic: input resize, latent packing, position ids per version, the
time-shift schedule and the norm-rescaled classifier-free guidance.

- resize (``ImageGenerator.input_process_image``): area ``size_level**2`` at the source's aspect ratio (ceil),
  floored to multiples of 16, PIL LANCZOS; the output is resized back to the source size (PIL BICUBIC);
- packing: ``b c (h 2) (w 2) -> b (h w) (c 2 2)``; the sequence is the noisy target tokens, then the reference;
- ids: target ``(0, i, j)``; reference ``(0, i, j)`` in v1.0, ``(1, i + 1, j + 1)`` in v1.1;
- schedule: ``t = linspace(1, 0, N + 1)`` shifted by ``e^mu / (e^mu + 1/t - 1)``, ``mu`` linear from 0.5 at 256
  to 1.15 at 4096 target tokens (extrapolated outside), computed in float32 as the official code does;
- guidance: ``uncond + s * d / f(|d|)`` with ``d = cond - uncond``, ``|d|`` the L2 norm over each token's
  channels and ``f(n) = n**0.4`` where ``n > 1`` (else 1), for sigma above ``truncate``; plain CFG below it.
"""

from __future__ import annotations

import math

import torch
from PIL import Image

VERSIONS = ("v1.0", "v1.1")
RESCALE_POWER = 0.4


def input_size(width: int, height: int, size_level: int) -> tuple[int, int]:
    """``(width, height)`` the official code resizes a source to: area ``size_level**2``, multiples of 16."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    r = width / height
    if width > height:
        w = math.ceil(math.sqrt(size_level * size_level * r))
        h = math.ceil(w / r)
    else:
        h = math.ceil(math.sqrt(size_level * size_level / r))
        w = math.ceil(h * r)
    w, h = w // 16 * 16, h // 16 * 16
    if w == 0 or h == 0:
        raise ValueError(f"size_level {size_level} gives an empty image for a {width}x{height} source")
    return w, h


def resize_source(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The source resized to ``size`` (width, height) with LANCZOS, as the official input processing does."""
    return image.convert("RGB").resize(size, Image.LANCZOS)


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/2 * W/2, C * 4), channel-major within each 2x2 patch."""
    b, c, h, w = latents.shape
    x = latents.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, L, C * 4) -> (B, C, 2 * ceil(height / 16), 2 * ceil(width / 16)); ``height``/``width`` in pixels."""
    b, _, c4 = tokens.shape
    h, w = math.ceil(height / 16), math.ceil(width / 16)
    x = tokens.reshape(b, h, w, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c4 // 4, h * 2, w * 2)


def grid_ids(h: int, w: int, offset: float = 0.0) -> torch.Tensor:
    """(h * w, 3) ids ``(offset, i + offset, j + offset)`` of an ``h x w`` token grid."""
    ids = torch.full((h, w, 3), float(offset))
    ids[..., 1] += torch.arange(h)[:, None]
    ids[..., 2] += torch.arange(w)[None, :]
    return ids.reshape(h * w, 3)


def image_ids(h: int, w: int, version: str) -> torch.Tensor:
    """(2 h w, 3): the target grid's ids, then the reference grid's (the version's rule)."""
    if version not in VERSIONS:
        raise ValueError(f"unknown Step1X-Edit version {version!r}; expected one of {VERSIONS}")
    return torch.cat([grid_ids(h, w), grid_ids(h, w, 1.0 if version == "v1.1" else 0.0)])


def schedule_mu(image_seq_len: int, base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """The shift ``mu``: linear through (256, base_shift) and (4096, max_shift)."""
    m = (max_shift - base_shift) / (4096 - 256)
    return m * image_seq_len + (base_shift - m * 256)


def time_shift_schedule(num_steps: int, image_seq_len: int) -> torch.Tensor:
    """(num_steps + 1,) float32 sigmas from 1 to 0 (``image_seq_len``: target tokens only)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    t = torch.linspace(1, 0, num_steps + 1)
    e = math.exp(schedule_mu(image_seq_len))
    return e / (e + (1 / t - 1))


def guided_velocity(cond: torch.Tensor, uncond: torch.Tensor, scale: float, sigma: torch.Tensor,
                    truncate: float) -> torch.Tensor:
    """Classifier-free guidance with the official norm rescale for rows whose sigma exceeds ``truncate``.

    ``cond``/``uncond``: (B, L, C); ``sigma``: 0-d or (B,)."""
    d = cond - uncond
    n = torch.linalg.vector_norm(d, dim=2, keepdim=True)
    f = torch.where(n > 1.0, n.pow(RESCALE_POWER), torch.ones_like(n))
    rescale = (torch.as_tensor(sigma).double() > truncate).reshape(-1, 1, 1).to(d.device)
    return uncond + torch.where(rescale, scale * d / f, scale * d)
