"""The official EditReward inference, exactly, and a prefix-shared way to compute the same scores for groups.

The released model scores an edit with one full backbone pass per dimension d: the base model's chat template
(its default system prompt included) around one user turn [source image, edited image, rubric d + reward
suffix], then the generation prompt; head d reads the last hidden state at the reward token. Images are
resized by the factor-28 ``smart_resize`` with min = max pixels (which does not fix the pixel count), and the
language model sees plain 1-D positions (``cumsum(mask) - 1`` on all three M-RoPE axes), image tokens
included. The score is the mean of the heads' mu; the fused sigma is exp(mean log sigma).

``OfficialInputBuilder(sources, instructions, editeds)`` returns one batch for all passes: ``input_ids`` and
``attention_mask`` of shape (D, B, L) (one row per pass and edit) and the images' ``pixel_values`` /
``image_grid_thw`` (shared by the passes); ``official_forward`` turns it into (mu, log_sigma), each (B, D).
``official_group_scores`` computes the same numbers for groups of candidates: the part of the sequence
before the edited image (system turn, user header, source image) is the same for every candidate of a group
and for both passes, so it is encoded once per group; each candidate's edited image once on top of it; then
each pass adds only its rubric, cut after the reward token (causal attention: later tokens cannot change it).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from PIL import Image

from reward.model.backbone import cache_kwargs
from reward.model.config import RewardModelConfig
from reward.model.inputs import IMAGE_PLACEHOLDER, ImageLike, InputError, check_instruction, load_rgb
from reward.official.prompts import (OFFICIAL_RESIZE_FACTOR, OFFICIAL_REWARD_TOKEN, QWEN25_VL_CHAT_TEMPLATE,
                                     REWARD_SUFFIX, RUBRICS)

IMAGE_PAD = "<|image_pad|>"
MAX_ASPECT_RATIO = 200


def smart_resize(height: int, width: int, factor: int = OFFICIAL_RESIZE_FACTOR, min_pixels: int = 200704,
                 max_pixels: int = 200704) -> tuple[int, int]:
    """(height, width) the official image loader resizes to: sides rounded to multiples of ``factor``, then scaled
    down (floor) when above ``max_pixels`` or up (ceil) when below ``min_pixels``; aspect ratios over 200 are refused."""
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise InputError(f"aspect ratio {max(height, width) / min(height, width):.1f} is over {MAX_ASPECT_RATIO}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar, w_bar = math.floor(height / beta / factor) * factor, math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    if h_bar < factor or w_bar < factor:
        raise InputError(f"a {width}x{height} image resizes to {w_bar}x{h_bar}: too thin for {factor}-pixel patches")
    return h_bar, w_bar


def official_image(image: ImageLike, pixels: int, what: str = "image") -> Image.Image:
    """The image as the official loader gives it to the processor: RGB (alpha dropped), bicubic ``smart_resize``."""
    rgb = load_rgb(image, what)
    h, w = smart_resize(rgb.height, rgb.width, min_pixels=pixels, max_pixels=pixels)
    return rgb.resize((w, h), Image.Resampling.BICUBIC)


@dataclass
class _Pieces:
    """One pass's text split around the edited image's placeholder: what comes before it, and after it."""

    prefix: str
    rest: str


class OfficialInputBuilder:
    """Builds the official inputs of a reward model in ``inference: official`` mode (see the module docstring)."""

    def __init__(self, processor: Any, model_cfg: RewardModelConfig):
        if model_cfg.num_dimensions != len(RUBRICS):
            raise ValueError(f"official inference has {len(RUBRICS)} heads (instruction following, visual quality); "
                             f"the model config has {model_cfg.num_dimensions} dimensions")
        if getattr(processor, "chat_template", None) is None:
            raise ValueError("official inference renders the base model's chat template, and this processor has none "
                             "(import the model with `editrl reward import-official`, which saves the base's processor)")
        self.processor = processor
        self.cfg = model_cfg
        self.tokenizer = processor.tokenizer
        self.reward_token = model_cfg.reward_token
        self.reward_token_id = self.tokenizer.convert_tokens_to_ids(self.reward_token)
        if self.reward_token_id is None or self.reward_token_id == self.tokenizer.unk_token_id:
            raise ValueError(f"the processor's tokenizer has no reward token {self.reward_token!r}")
        self.merge = int(getattr(processor.image_processor, "merge_size", 2))
        self._special = tuple(str(t) for t in self.tokenizer.all_special_tokens) + (self.reward_token,)
        self.suffix = REWARD_SUFFIX.replace(OFFICIAL_REWARD_TOKEN, self.reward_token)

    # -- text ----------------------------------------------------------------------------------------
    def check_instruction(self, instruction: Any) -> str:
        """The instruction exactly as given (the official prompt does not strip it), or InputError when it is empty,
        over the limits or holds special tokens (which the official code would read as control tokens)."""
        from editrl.io import input_limits

        limits = input_limits()
        check_instruction(instruction, self._special, limits)
        if len(instruction.encode("utf-8")) > limits.max_instruction_tokens:
            n = len(self.tokenizer(instruction, add_special_tokens=False)["input_ids"])
            if n > limits.max_instruction_tokens:
                raise InputError(f"instruction: {n:,} tokens, more than max_instruction_tokens = "
                                 f"{limits.max_instruction_tokens:,}")
        return instruction

    def text(self, instruction: str, dim: int) -> str:
        """The whole official sequence of pass ``dim`` as text (images as single placeholders)."""
        user = RUBRICS[dim].format(text_prompt=instruction) + self.suffix
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": user}]}]
        return self.processor.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)

    def pieces(self, instruction: str, dim: int) -> _Pieces:
        """Pass ``dim`` split around the edited image's placeholder (the second image of the user turn)."""
        text = self.text(instruction, dim)
        first = text.find(IMAGE_PLACEHOLDER)
        second = text.find(IMAGE_PLACEHOLDER, first + len(IMAGE_PLACEHOLDER))
        if first < 0 or second < 0:
            raise ValueError(f"the chat template did not render two {IMAGE_PLACEHOLDER} placeholders: {text[:200]!r}")
        return _Pieces(prefix=text[:second], rest=text[second + len(IMAGE_PLACEHOLDER):])

    def _expand(self, text: str, grids: Sequence[torch.Tensor]) -> str:
        """``text`` with its n-th image pad repeated once per merged visual token of image n (the processor's rule)."""
        parts = text.split(IMAGE_PAD)
        if len(parts) - 1 != len(grids):
            raise ValueError(f"{len(parts) - 1} image placeholders for {len(grids)} images")
        out = [parts[0]]
        for grid, part in zip(grids, parts[1:]):
            out += [IMAGE_PAD * (int(grid.prod()) // self.merge ** 2), part]
        return "".join(out)

    def _tokens(self, texts: list[str]) -> Any:
        return self.tokenizer(texts, padding=True, padding_side="right", return_tensors="pt")

    def images(self, images: Sequence[ImageLike], what: str) -> Any:
        """Resized images through the base's image processor: ``pixel_values`` and ``image_grid_thw``."""
        resized = [official_image(im, self.cfg.pixel_area, what) for im in images]
        return self.processor.image_processor(images=resized, return_tensors="pt")

    # -- batches -------------------------------------------------------------------------------------
    def __call__(self, sources: Sequence[ImageLike], instructions: Sequence[str],
                 editeds: Sequence[ImageLike]) -> Any:
        """Every pass of every edit as one batch: input_ids / attention_mask (D, B, L), pixel_values, image_grid_thw."""
        from transformers import BatchFeature

        if not (len(sources) == len(instructions) == len(editeds)):
            raise ValueError(f"sources, instructions, editeds differ in length: "
                             f"{len(sources)}, {len(instructions)}, {len(editeds)}")
        pairs = [im for pair in zip(sources, editeds) for im in pair]
        vision = self.images(pairs, "image")
        grids = vision["image_grid_thw"]
        texts = [self._expand(self.text(ins, d), grids[2 * b:2 * b + 2])
                 for d in range(len(RUBRICS)) for b, ins in enumerate(instructions)]
        tok = self._tokens(texts)
        shape = (len(RUBRICS), len(instructions), -1)
        return BatchFeature({"input_ids": tok["input_ids"].view(shape), "attention_mask": tok["attention_mask"].view(shape),
                             "pixel_values": vision["pixel_values"], "image_grid_thw": grids})

    def prefixes(self, sources: Sequence[ImageLike], instructions: Sequence[str]) -> Any:
        """What every candidate and pass of a group shares (system turn, user header, source image), right-padded."""
        from transformers import BatchFeature

        vision = self.images(sources, "source")
        grids = vision["image_grid_thw"]
        texts = []
        for g, ins in enumerate(instructions):
            prefixes = {self.pieces(ins, d).prefix for d in range(len(RUBRICS))}
            if len(prefixes) != 1:
                raise ValueError("the chat template puts pass-dependent text before the edited image: no shared prefix")
            texts.append(self._expand(prefixes.pop(), grids[g:g + 1]))
        tok = self._tokens(texts)
        return BatchFeature({**tok, "pixel_values": vision["pixel_values"], "image_grid_thw": grids})

    def edited_images(self, editeds: Sequence[ImageLike]) -> Any:
        """Each candidate's edited image as its own token run (vision start, pads, vision end), right-padded."""
        from transformers import BatchFeature

        vision = self.images(editeds, "edited")
        grids = vision["image_grid_thw"]
        tok = self._tokens([self._expand(IMAGE_PLACEHOLDER, grids[i:i + 1]) for i in range(len(editeds))])
        return BatchFeature({**tok, "pixel_values": vision["pixel_values"], "image_grid_thw": grids})

    def tail(self, instruction: str, dim: int) -> str:
        """Pass ``dim``'s text after the edited image, up to and including the reward token."""
        rest = self.pieces(instruction, dim).rest
        end = rest.find(self.reward_token)
        if end < 0:
            raise ValueError(f"the rendered prompt holds no reward token {self.reward_token!r} after the edited image")
        return rest[:end + len(self.reward_token)]

    def tails(self, texts: Sequence[str]) -> Any:
        """Tail texts (``tail``) tokenized, right-padded."""
        return self._tokens(list(texts))


def input_builder(processor: Any, model_cfg: RewardModelConfig) -> Any:
    """The input builder of a model config's inference mode: ``OfficialInputBuilder`` or ``RewardInputBuilder``."""
    if model_cfg.inference == "official":
        return OfficialInputBuilder(processor, model_cfg)
    from reward.model.inputs import RewardInputBuilder

    return RewardInputBuilder(processor, model_cfg)


def official_processor(processor: Any) -> Any:
    """``processor`` itself if it has a chat template, else a shallow copy with the public Qwen2.5-VL one
    (for benchmarking a model built without a base folder)."""
    if getattr(processor, "chat_template", None) is not None:
        return processor
    view = copy.copy(processor)
    view.chat_template = QWEN25_VL_CHAT_TEMPLATE
    return view


# -- forward passes ----------------------------------------------------------------------------------
def _vision(core: Any, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
    """Merged visual tokens of the images, (sum t*h*w/4, H) (transformers 5 returns them as ``pooler_output``)."""
    out = core.visual(pixel_values.to(core.visual.dtype), grid_thw=grid_thw)
    return out.pooler_output if hasattr(out, "pooler_output") else out


def _embed(model: Any, input_ids: torch.Tensor, image_features: torch.Tensor | None) -> torch.Tensor:
    core = model.core
    emb = core.get_input_embeddings()(input_ids)
    if image_features is not None:
        is_image = (input_ids == core.config.image_token_id).unsqueeze(-1).expand_as(emb)
        emb = emb.masked_scatter(is_image, image_features.to(emb.dtype))
    return emb


def _positions(full_mask: torch.Tensor, new: int) -> torch.Tensor:
    """1-D positions of the last ``new`` tokens: the number of real tokens before each (pads anywhere skipped)."""
    return (full_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -new:]


def _language_model(model: Any, emb: torch.Tensor, full_mask: torch.Tensor, cache: Any = None) -> Any:
    """The text model over ``emb`` after ``cache`` (which it extends), with 1-D positions from ``full_mask``."""
    lm = model.core.language_model
    return lm(inputs_embeds=emb, attention_mask=full_mask, position_ids=_positions(full_mask, emb.shape[1]),
              use_cache=cache is not None, **cache_kwargs(lm, cache))


def _heads(model: Any, hidden: torch.Tensor, input_ids: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    out = model.head_outputs(model.reward_hidden(hidden, input_ids), dims=[dim])
    return out.mu[:, 0], out.log_sigma[:, 0]


def official_forward(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     pixel_values: torch.Tensor, image_grid_thw: torch.Tensor,
                     fuse_passes: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, log_sigma), each (B, D) float32, of an ``OfficialInputBuilder`` batch on an ``EditRewardModel``.

    ``fuse_passes``: the images go through the vision tower once and all passes through the language model as
    one batch of D*B rows; otherwise each pass runs on its own, vision tower included, as the official code
    does (the benchmark's cost baseline). Both compute the same numbers. Gradients flow (training)."""
    n_dims, batch, length = input_ids.shape
    mus, log_sigmas = [], []
    if fuse_passes:
        ids, mask = input_ids.reshape(n_dims * batch, length), attention_mask.reshape(n_dims * batch, length)
        features = _vision(model.core, pixel_values, image_grid_thw).repeat(n_dims, 1)
        hidden = _language_model(model, _embed(model, ids, features), mask).last_hidden_state
        for d in range(n_dims):
            rows = slice(d * batch, (d + 1) * batch)
            mu, log_sigma = _heads(model, hidden[rows], ids[rows], d)
            mus.append(mu), log_sigmas.append(log_sigma)
    else:
        for d in range(n_dims):
            ids, mask = input_ids[d], attention_mask[d]
            features = _vision(model.core, pixel_values, image_grid_thw)
            hidden = _language_model(model, _embed(model, ids, features), mask).last_hidden_state
            mu, log_sigma = _heads(model, hidden, ids, d)
            mus.append(mu), log_sigmas.append(log_sigma)
    return torch.stack(mus, dim=1), torch.stack(log_sigmas, dim=1)


def _cache(kv: list[tuple[torch.Tensor, torch.Tensor]], rows: torch.Tensor | None = None) -> Any:
    """A fresh cache holding ``kv`` (the rows ``rows``); a forward appends to the cache object, never to ``kv``."""
    from transformers import DynamicCache

    if not kv:
        return DynamicCache()
    return DynamicCache(ddp_cache_data=[(k, v) if rows is None else (k[rows], v[rows]) for k, v in kv])


def _kv(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def official_group_scores(model: Any, builder: OfficialInputBuilder, sources: Sequence[ImageLike],
                          instructions: Sequence[str], candidates: Sequence[tuple[int, ImageLike]],
                          batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, log_sigma), each (N, D), of N candidates ``(group index, edited image)`` of the groups
    ``(sources[g], instructions[g])``: the official numbers, computed over one cached prefix per group."""
    device = next(model.parameters()).device
    prefix = builder.prefixes(sources, instructions).to(device)
    prefix_features = _vision(model.core, prefix["pixel_values"], prefix["image_grid_thw"])
    prefix_mask = prefix["attention_mask"]
    cache = _cache([])
    _language_model(model, _embed(model, prefix["input_ids"], prefix_features), prefix_mask, cache)
    prefix_kv = _kv(cache)
    tails = [[builder.tail(ins, d) for ins in instructions] for d in range(len(RUBRICS))]  # [pass][group]
    mus, log_sigmas = [], []
    for start in range(0, len(candidates), batch_size):
        chunk = candidates[start:start + batch_size]
        rows = torch.tensor([g for g, _ in chunk], dtype=torch.long, device=device)
        image = builder.edited_images([e for _, e in chunk]).to(device)
        features = _vision(model.core, image["pixel_values"], image["image_grid_thw"])
        mask = torch.cat([prefix_mask[rows], image["attention_mask"]], dim=1)
        cache = _cache(prefix_kv, rows)
        _language_model(model, _embed(model, image["input_ids"], features), mask, cache)
        image_kv = _kv(cache)
        chunk_mu, chunk_ls = [], []
        for d in range(len(RUBRICS)):
            tail = builder.tails([tails[d][g] for g, _ in chunk]).to(device)
            hidden = _language_model(model, _embed(model, tail["input_ids"], None),
                                     torch.cat([mask, tail["attention_mask"]], dim=1), _cache(image_kv)).last_hidden_state
            mu, log_sigma = _heads(model, hidden, tail["input_ids"], d)
            chunk_mu.append(mu), chunk_ls.append(log_sigma)
        mus.append(torch.stack(chunk_mu, dim=1)), log_sigmas.append(torch.stack(chunk_ls, dim=1))
    return torch.cat(mus), torch.cat(log_sigmas)
