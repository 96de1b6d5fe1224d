"""The Step1X-Edit text encoder: Qwen2.5-VL over a fixed "enhanced prompt" request, the source image and the
instruction, as the official conditioner builds it.

For each (instruction, image):

1. the image (already at the editing size) goes through the official tensor -> PIL round trip, which truncates
   ``(x / 255) * 255`` to uint8, then the ``qwen_vl_utils`` 0.0.10 resize (multiples of 28, PIL BICUBIC);
2. one user turn ``[PREFIX, image, instruction]`` is rendered with the processor's chat template (system turn
   included; ``vision_id=True`` adds the "Picture 1: " label that transformers >= 4.55 renders, the default
   reproduces the official pin 4.51.3) and processed with ``min_pixels = 256 * 28**2``, ``max_pixels = 324 * 28**2``;
3. quoted text is re-tokenised one character at a time (``split_quoted``: apostrophes and curly quotes become
   ``"``; only quotes after character 155 of the rendered text count); the ids up to the first ``<|vision_end|>``
   come from the processor, the rest from the re-tokenised pieces;
4. the attention mask is ``input_ids > 0`` (id 0, ``!``, is masked, as in the official code); the 3-D RoPE
   positions are transformers' own, with masked tokens at position 1 as transformers 4.x placed them;
5. the last hidden state (after the final norm) without its first 217 tokens is zero-padded or cut to 640 rows
   and stored in bfloat16 (the official buffer's dtype); the mask marks the kept rows.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

PREFIX = (
    'Given a user prompt, generate an "Enhanced prompt" that provides detailed visual descriptions suitable for image '
    "generation. Evaluate the level of detail in the user prompt:\n"
    "- If the prompt is simple, focus on adding specifics about colors, shapes, sizes, textures, and spatial "
    "relationships to create vivid and concrete scenes.\n"
    "- If the prompt is already detailed, refine and enhance the existing details slightly without "
    "overcomplicating.\n\n"
    "Here are examples of how to transform or refine prompts:\n"
    "- User Prompt: A cat sleeping -> Enhanced: A small, fluffy white cat curled up in a round shape, sleeping "
    "peacefully on a warm sunny windowsill, surrounded by pots of blooming red flowers.\n"
    "- User Prompt: A busy city street -> Enhanced: A bustling city street scene at dusk, featuring glowing street "
    "lamps, a diverse crowd of people in colorful clothing, and a double-decker bus passing by towering glass "
    "skyscrapers.\n\n"
    "Please generate only the enhanced description for the prompt below and avoid including any additional "
    "commentary or evaluations:\n"
    "User Prompt:"
)
DROP_TOKENS = 217  # rows dropped from the front (the system turn + prefix are 218 tokens: the last prefix ':' stays)
MAX_LENGTH = 640
EMBED_DTYPE = torch.bfloat16
QUOTE_START = 155  # quotes at a character index <= this (inside the prefix) are not re-tokenised
MIN_PIXELS, MAX_PIXELS = 256 * 28 * 28, 324 * 28 * 28  # the processor's limits (256-324 image tokens)
VISION_FACTOR, VISION_MIN, VISION_MAX = 28, 4 * 28 * 28, 16384 * 28 * 28  # qwen_vl_utils 0.0.10 defaults
OPEN_QUOTE, CLOSE_QUOTE = "\u201c", "\u201d"


def split_quoted(text: str) -> list[str]:
    """The rendered prompt cut into pieces: plain runs, and one ``“c”`` piece per character inside quotes."""
    text = text.replace("'", '"').replace(OPEN_QUOTE, '"').replace(CLOSE_QUOTE, '"')
    pieces, run, quoted = [], "", False
    for i, ch in enumerate(text):
        if ch == '"' and i > QUOTE_START:
            run += ch
            if not quoted:
                pieces.append(run)
                run = ""
            quoted = not quoted
        elif quoted:
            pieces.append(OPEN_QUOTE + ch + CLOSE_QUOTE)
        else:
            run += ch
    if run:
        pieces.append(run)
    return pieces


def truncating_round_trip(image: Image.Image) -> Image.Image:
    """``to_pil(to_tensor(image))``: uint8 -> float ``/ 255`` -> ``* 255`` truncated back to uint8."""
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy())
    return Image.fromarray(pixels.float().div(255).mul(255).to(torch.uint8).numpy())


def _by_factor(x: float, how: Any) -> int:
    return int(how(x / VISION_FACTOR) * VISION_FACTOR)


def vision_resize(image: Image.Image) -> Image.Image:
    """The ``qwen_vl_utils`` resize: sides rounded to multiples of 28 within its default pixel limits."""
    w, h = image.size
    h_bar, w_bar = max(VISION_FACTOR, _by_factor(h, round)), max(VISION_FACTOR, _by_factor(w, round))
    if h_bar * w_bar > VISION_MAX:
        beta = math.sqrt(h * w / VISION_MAX)
        h_bar, w_bar = _by_factor(h / beta, math.floor), _by_factor(w / beta, math.floor)
    elif h_bar * w_bar < VISION_MIN:
        beta = math.sqrt(VISION_MIN / (h * w))
        h_bar, w_bar = _by_factor(h * beta, math.ceil), _by_factor(w * beta, math.ceil)
    return image.resize((w_bar, h_bar))


class Step1XPromptEncoder:
    """Qwen2.5-VL embeddings of (instruction, source) rows for the connector: ``(embeds, mask)`` per batch."""

    def __init__(self, model: Any, processor: Any, vision_id: bool = False, max_length: int = MAX_LENGTH,
                 drop: int = DROP_TOKENS):
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.vision_id = vision_id
        self.max_length = max_length
        self.drop = drop
        self.image_token_id = int(model.config.image_token_id)
        self.vision_end_id = int(self.tokenizer.convert_tokens_to_ids("<|vision_end|>"))
        self.quote_ids = (self._single_id(OPEN_QUOTE), self._single_id(CLOSE_QUOTE))

    @classmethod
    def from_folders(cls, text_encoder_dir: str | Path, processor_dir: str | Path, dtype: torch.dtype,
                     device: str | torch.device | None = None, fast_image_processor: bool = False,
                     **kwargs: Any) -> "Step1XPromptEncoder":
        """Load ``Qwen2_5_VLForConditionalGeneration`` and its processor from local folders (never the hub).

        ``fast_image_processor``: the torchvision image processor (the default of transformers >= 4.52); the
        default PIL one reproduces the official pin exactly."""
        from transformers import AutoImageProcessor, AutoProcessor, Qwen2_5_VLForConditionalGeneration

        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            str(text_encoder_dir), dtype=dtype, local_files_only=True, attn_implementation="sdpa")
        model.requires_grad_(False).eval()
        if device is not None:
            model.to(device)
        image_processor = AutoImageProcessor.from_pretrained(
            str(processor_dir), min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, local_files_only=True,
            backend="torchvision" if fast_image_processor else "pil")
        processor = AutoProcessor.from_pretrained(str(processor_dir), image_processor=image_processor,
                                                  local_files_only=True)
        return cls(model, processor, **kwargs)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.text_config.hidden_size)

    def _single_id(self, text: str) -> int | None:
        ids = self.tokenizer(text)["input_ids"]
        return ids[0] if len(ids) == 1 else None

    def render(self, instruction: str) -> str:
        """The chat-template text of one request (system turn, prefix, image placeholder, instruction)."""
        messages = [{"role": "user", "content": [{"type": "text", "text": PREFIX}, {"type": "image"},
                                                 {"type": "text", "text": instruction}]}]
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                  add_vision_id=self.vision_id)

    def requote(self, text: str) -> list[int]:
        """Token ids of the rendered ``text`` with quoted characters tokenised one at a time."""
        ids: list[int] = []
        for piece in split_quoted(text):
            piece_ids = list(self.tokenizer(piece)["input_ids"])
            if len(piece_ids) >= 2 and (piece_ids[0], piece_ids[-1]) == self.quote_ids:
                piece_ids = piece_ids[1:-1]
            ids += piece_ids
        return ids

    def inputs(self, instruction: str, image: Image.Image) -> dict[str, torch.Tensor]:
        """Model inputs for one row: ``input_ids``, ``attention_mask``, ``pixel_values``, ``image_grid_thw``."""
        text = self.render(instruction)
        vision_image = vision_resize(truncating_round_trip(image))
        batch = self.processor(text=[text], images=[vision_image], padding=True, return_tensors="pt")
        old = batch["input_ids"][0].tolist()
        new = self.requote(text)
        ids = old[:old.index(self.vision_end_id)] + new[new.index(self.vision_end_id):]
        input_ids = torch.tensor([ids])
        return {"input_ids": input_ids, "attention_mask": (input_ids > 0).long(),
                "pixel_values": batch["pixel_values"], "image_grid_thw": batch["image_grid_thw"]}

    @torch.no_grad()
    def hidden_states(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(1, L, D) last hidden state of the language model for one row's ``inputs``."""
        device = self.model.device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        input_ids, mask = inputs["input_ids"], inputs["attention_mask"]
        inner = self.model.model
        positions, _ = inner.get_rope_index(input_ids, (input_ids == self.image_token_id).int(),
                                            image_grid_thw=inputs["image_grid_thw"], attention_mask=mask)
        positions = positions.masked_fill(mask[None] == 0, 1)
        out = inner(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                    pixel_values=inputs["pixel_values"].to(self.model.dtype), image_grid_thw=inputs["image_grid_thw"])
        return out.last_hidden_state

    def __call__(self, instructions: Sequence[str], images: Sequence[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(embeds (B, 640, D) bfloat16, mask (B, 640) int64)`` for (instruction, image) rows."""
        if len(instructions) != len(images):
            raise ValueError(f"{len(instructions)} instructions but {len(images)} images")
        device = self.model.device
        embeds = torch.zeros(len(images), self.max_length, self.hidden_size, dtype=EMBED_DTYPE, device=device)
        mask = torch.zeros(len(images), self.max_length, dtype=torch.long, device=device)
        for i, (text, image) in enumerate(zip(instructions, images)):
            hidden = self.hidden_states(self.inputs(text, image))[0, self.drop:][:self.max_length]
            embeds[i, :hidden.shape[0]] = hidden.to(EMBED_DTYPE)
            mask[i, :hidden.shape[0]] = 1
        return embeds, mask
