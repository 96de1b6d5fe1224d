"""Configuration of the EditReward model: which backbone, how inputs are built, which heads.

``RewardModelConfig`` is the part of a reward run's config that describes the *model*; it is saved as
``reward_config.yaml`` inside every reward checkpoint so that a checkpoint can be rebuilt without the
run's YAML. The training loop's own settings live in ``reward/train/config.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from editrl.dimensions import DIMENSIONS


@dataclass
class TinyBackboneConfig:
    """Sizes of the tiny Qwen2.5-VL built from scratch for the embedded editworld default."""

    hidden_size: int = 128  # text (LLM) hidden size
    num_hidden_layers: int = 4  # text decoder layers
    num_attention_heads: int = 4  # text attention heads (head_dim = hidden_size / heads = 32)
    num_key_value_heads: int = 4  # text key/value heads (GQA when smaller than num_attention_heads)
    intermediate_size: int = 256  # text MLP width
    mrope_section: list[int] = field(default_factory=lambda: [4, 6, 6])  # (t, h, w) rotary split; sums to head_dim / 2
    max_position_embeddings: int = 4096  # longest sequence the rotary tables are built for
    vision_depth: int = 4  # vision transformer blocks
    vision_hidden_size: int = 64  # vision transformer width
    vision_num_heads: int = 4  # vision attention heads
    vision_intermediate_size: int = 128  # vision MLP width
    vision_fullatt_block_indexes: list[int] = field(default_factory=lambda: [1, 3])  # blocks with full (not windowed) attention
    vision_window_size: int = 112  # windowed-attention window in pixels
    vision_patch_size: int = 14  # pixels per vision patch side (Qwen2.5-VL: 14); the processor uses the same
    # Std of the token-embedding init; 1.0 matches the fan-in-initialised block outputs (the configs' 0.02 leaves
    # text tokens ~50x smaller than image tokens in the residual stream, so instruction words are drowned).
    embed_init_std: float = 0.02
    # Initialise half of the patch embedding's output channels as frame-difference filters (weights on the second
    # frame = minus those on the first), so that with edited_input="pair_clip" they start out reading edited - source
    # and read exactly 0 on a still image; every weight stays trainable.
    clip_difference_init: bool = False
    vocab_merges: int = 300  # byte-level BPE merges learned for the offline tokenizer
    seed: int = 0  # initialisation seed of the tiny backbone's weights


@dataclass
class RewardModelConfig:
    """The reward model: backbone, input format and Gaussian heads (saved in every checkpoint)."""

    backbone: str = "tiny"  # "tiny" (built from `tiny`) or a local checkpoint dir of a Qwen2.5-VL / Qwen2-VL / Qwen3-VL model
    tiny: TinyBackboneConfig = field(default_factory=TinyBackboneConfig)  # sizes used when backbone == "tiny"
    pixel_area: int = 56 * 56  # pixels per image after resizing (aspect kept; 448*448 for real backbones)
    # "rubric": paper appendix A.9 text; "short": one line (tiny model); "clip": "short" without the source still,
    # which the (source, edited) clip already shows (edited_input="pair_clip" only)
    prompt: Literal["short", "rubric", "clip"] = "short"
    head: Literal["multiple", "shared"] = "multiple"  # one MLP per dimension, or one MLP emitting all dimensions
    head_width: int = 64  # first hidden width of the MLP head(s) (official: 1024)
    head_bottleneck: int = 16  # second hidden width of the MLP head(s) (official: 16)
    head_dropout: float = 0.05  # dropout after the first head layer (official: 0.05)
    dimensions: tuple[str, ...] = DIMENSIONS  # scored dimensions, in output order
    # How dimensions combine into the ranking score: "mean" (mu mean, sigma = sqrt(sum var) / D), "min", "sum", or
    # "mean_log_sigma" (the released EditReward's pooling: mu mean, sigma = exp(mean log sigma), in loss and score)
    aggregation: Literal["mean", "min", "sum", "mean_log_sigma"] = "mean"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # backbone dtype (heads always run in float32)
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"  # attention kernel of the backbone
    gradient_checkpointing: bool = False  # recompute backbone activations in backward to save memory
    freeze_vision: bool = False  # keep the vision tower's weights fixed during training
    lora_r: int = 0  # > 0: train LoRA adapters of this rank on the LLM instead of its full weights
    lora_alpha: int = 32  # LoRA scaling numerator (used when lora_r > 0)
    lora_dropout: float = 0.0  # dropout on the LoRA branch (used when lora_r > 0)
    reward_token: str = "<|reward|>"  # special token whose last hidden state feeds the heads
    # Which state of the reward token feeds the heads: "final" = the backbone's last hidden state (after its
    # final RMSNorm; the paper's choice for pretrained backbones); "pre_norm" = the last decoder layer's output
    # before that norm. A backbone trained from scratch learns far faster from "pre_norm": the final norm
    # removes feature magnitude, which is where a fresh vision tower first encodes noise/blur.
    head_input: Literal["final", "pre_norm"] = "final"
    # How the edited image enters the sequence: "image" (a still image, as the paper) or "pair_clip" (a two-frame
    # clip (source, edited) through the backbone's video path, whose temporal patches put the same location of
    # both images in one token; the source still opens the shared prefix). "pair_clip" costs no extra tokens and
    # is what lets a backbone trained from scratch compare the two images; pretrained backbones use "image".
    edited_input: Literal["image", "pair_clip"] = "image"
    # "native": editrl's input format (one pass scores every dimension, `prompt`, 3-D M-RoPE positions); "official":
    # the released EditReward's (set by `editrl reward import-official`): the base's chat template with one rubric
    # per head, one pass per dimension, 1-D positions, factor-28 resize to `pixel_area`; reward/official/inference.py
    inference: Literal["native", "official"] = "native"

    def __post_init__(self) -> None:
        if not self.dimensions:
            raise ValueError("dimensions must name at least one dimension")
        if self.pixel_area < 28 * 28:
            raise ValueError(f"pixel_area must be at least 784 (one 28x28 merged patch), got {self.pixel_area}")
        if self.prompt == "clip" and self.edited_input != "pair_clip":
            raise ValueError('prompt "clip" shows the source only inside the (source, edited) clip: it needs '
                             f'edited_input="pair_clip", got {self.edited_input!r}')
        if self.lora_r < 0:
            raise ValueError(f"lora_r must be >= 0, got {self.lora_r}")
        self.dimensions = tuple(self.dimensions)
        if self.inference == "official":
            need = {"head": "multiple", "edited_input": "image", "head_input": "final"}
            wrong = {k: getattr(self, k) for k, v in need.items() if getattr(self, k) != v}
            if len(self.dimensions) != 2:
                wrong["dimensions"] = list(self.dimensions)
            if wrong:
                raise ValueError(f"inference 'official' needs {need} and 2 dimensions; got {wrong}")

    @property
    def num_dimensions(self) -> int:
        return len(self.dimensions)
