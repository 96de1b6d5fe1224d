"""The Step1X-Edit connector: a token refiner from Qwen2.5-VL hidden states to the DiT's text stream and pooled vector.

No library has it. Module names follow the official checkpoint keys (``connector.`` prefix stripped), so an official
state dict loads strictly. For ``x`` (B, S, Din) Qwen hidden states, ``mask`` (B, S) and ``t`` (B,) in [0, 1]:

- ``t`` is multiplied by 1000 and embedded (256 sinusoidal channels, cos first) by ``S.t_embedder.mlp``;
- ``m`` = the masked mean of ``x``; ``S.c_embedder`` (Linear, SiLU, Linear) of ``m`` is added to the time embedding;
- pooled = ``global_proj_out(m * (1 + scale_factor))`` in v1.0 (the factor is a stored parameter), without the
  factor in v1.1; it feeds the DiT's pooled-projection input;
- tokens: ``S.input_embedder(x)`` through ``depth`` refiner blocks (LayerNorm, fused qkv self-attention with no QK
  norm, SiLU MLP; gate-only adaLN from the conditioning vector). The attention mask admits pairs of valid tokens,
  plus key 0 for every query (so padded rows attend to the first token).

Sizes come from the state dict's shapes; the number of heads is not in the weights (``heads``; the release uses
32 heads of 128).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import PixArtAlphaTextProjection
from torch import nn

from editrl.io import DataError

PREFIX = "connector."


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) -> (B, dim) sinusoidal embedding, cos half first, max period 10000."""
    from diffusers.models.embeddings import get_timestep_embedding

    return get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0)


class RefinerMLP(nn.Module):
    """Linear -> SiLU -> Linear (keys ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(x)))


class RefinerBlock(nn.Module):
    """Self-attention + MLP, each gated by a vector computed from the conditioning ``c``."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"connector width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attn_qkv = nn.Linear(dim, 3 * dim)
        self.self_attn_proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = RefinerMLP(dim, mlp_hidden)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        gate_attn, gate_mlp = self.adaLN_modulation(c).unsqueeze(1).chunk(2, dim=-1)
        b, s, d = x.shape
        qkv = self.self_attn_qkv(self.norm1(x)).reshape(b, s, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, S, head_dim)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + self.self_attn_proj(attn.transpose(1, 2).reshape(b, s, d)) * gate_attn
        return x + self.mlp(self.norm2(x)) * gate_mlp


class RefinerStack(nn.Module):
    """The refiner blocks (key ``blocks.N``) with the valid-pairs-plus-key-0 attention mask."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int, depth: int):
        super().__init__()
        self.blocks = nn.ModuleList([RefinerBlock(dim, heads, mlp_hidden) for _ in range(depth)])

    def forward(self, x: torch.Tensor, c: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        attn_mask = None
        if mask is not None:
            valid = mask.to(x.device).bool()
            attn_mask = (valid[:, None, :, None] & valid[:, None, None, :]).clone()
            attn_mask[..., 0] = True
        for block in self.blocks:
            x = block(x, c, attn_mask)
        return x


class TokenRefiner(nn.Module):
    """Input projection, time + context conditioning, refiner blocks (the official ``S``)."""

    def __init__(self, dim_in: int, dim: int, heads: int, depth: int, mlp_hidden: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.input_embedder = nn.Linear(dim_in, dim)
        self.t_embedder = nn.Module()
        self.t_embedder.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.c_embedder = PixArtAlphaTextProjection(dim_in, dim, act_fn="silu")  # keys linear_1, linear_2
        self.individual_token_refiner = RefinerStack(dim, heads, mlp_hidden, depth)

    def forward(self, x: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None, mean: torch.Tensor) -> torch.Tensor:
        mlp = self.t_embedder.mlp
        t_emb = mlp(timestep_embedding(t, self.freq_dim).to(mlp[0].weight.dtype))
        c = t_emb + self.c_embedder(mean)
        return self.individual_token_refiner(self.input_embedder(x), c, mask)


class Step1XConnector(nn.Module):
    """Qwen hidden states -> (text tokens for the DiT, pooled vector); v1.0 has a ``scale_factor`` parameter."""

    def __init__(self, dim_in: int, dim: int, heads: int, depth: int, mlp_hidden: int, pooled_dim: int,
                 scale_factor: bool, freq_dim: int = 256):
        super().__init__()
        self.S = TokenRefiner(dim_in, dim, heads, depth, mlp_hidden, freq_dim)
        self.global_proj_out = nn.Linear(dim_in, pooled_dim)
        self.scale_factor = nn.Parameter(torch.zeros(1)) if scale_factor else None

    def forward(self, x: torch.Tensor, t: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens (B, S, dim), pooled (B, pooled_dim))`` for hidden states ``x``, ``t`` (B,) in [0, 1]."""
        t = t * 1000
        m = mask.unsqueeze(-1)
        mean = (x * m).sum(dim=1) / m.sum(dim=1)
        scaled = mean if self.scale_factor is None else mean * (1 + self.scale_factor.to(x.dtype))
        return self.S(x, t, mask, mean), self.global_proj_out(scaled)

    @classmethod
    def from_shapes(cls, shapes: dict[str, tuple[int, ...]], heads: int | None = None,
                    where: str = "checkpoint") -> "Step1XConnector":
        """An (uninitialised-size-correct) connector for the ``connector.*`` shapes of a checkpoint.

        ``heads`` defaults to width / 128 (the release: 4096 / 128 = 32); a width not divisible by 128 needs it."""
        def shape(key: str) -> tuple[int, ...]:
            if PREFIX + key not in shapes:
                raise DataError(where, f"not a Step1X-Edit checkpoint: {PREFIX + key} is missing")
            return tuple(shapes[PREFIX + key])

        dim, dim_in = shape("S.input_embedder.weight")
        depth = 0
        while f"{PREFIX}S.individual_token_refiner.blocks.{depth}.norm1.weight" in shapes:
            depth += 1
        if depth == 0:
            raise DataError(where, "the connector has no refiner blocks (connector.S.individual_token_refiner.blocks.0.*)")
        if heads is None:
            if dim % 128:
                raise DataError(where, f"the connector width {dim} is not a multiple of 128: pass connector_heads "
                                       f"(the number of refiner attention heads is not stored in the weights)")
            heads = dim // 128
        mlp_hidden = shape("S.individual_token_refiner.blocks.0.mlp.fc1.weight")[0]
        pooled_dim = shape("global_proj_out.weight")[0]
        freq_dim = shape("S.t_embedder.mlp.0.weight")[1]
        return cls(dim_in, dim, heads, depth, mlp_hidden, pooled_dim, PREFIX + "scale_factor" in shapes, freq_dim)
