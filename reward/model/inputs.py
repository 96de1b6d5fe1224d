"""Turn (source image, instruction, edited image) into the token/pixel batch the reward backbone reads.

One sequence per edit: prompt, SOURCE image, instruction, then the EDITED image, then the reward token.
With ``edited_input="pair_clip"`` the edited image enters as a two-frame clip (source, edited) through the
backbone's own video path: a Qwen2.5-VL patch spans two frames (``temporal_patch_size`` 2; a still image
fills both with itself), so each patch token of the clip sees one location of both images at once.
Everything the candidates of one group share (prompt, source, instruction) comes before the edited
image, so a group can be scored by encoding that *prefix* once and only the *suffix* (edited image +
reward token) per candidate. Batches are right-padded; the reward token is found by id, not by position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

from PIL import Image

from editrl.io import InputLimits, image_size_problem, input_limits, text_problem
from reward.model.config import RewardModelConfig

ImageLike = Union[Image.Image, str, Path]

IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"

# Paper appendix A.9, its two per-dimension templates merged into one prompt so that one forward pass
# scores both dimensions (the paper's first template is mislabelled "Visual Quality & Realism"; it is
# the instruction-following rubric).
RUBRIC = """You are tasked with evaluating an edited image **in comparison with the original source image** on two dimensions, \
**Instruction Following** and **Visual Quality & Realism**, assigning each a score from 1 to 4, with 1 being the worst and 4 being the best.

- **Inputs Provided:**
- Source Image (before editing)
- Edited Image (after applying the instruction)
- Text Instruction

Dimension 1: Instruction Following
- **Sub-Dimensions to Evaluate:**
- **Semantic Accuracy:** Assess whether the edited content accurately captures the semantics of the instruction. The edited result should precisely match the intended meaning. For example, if the instruction is "replace apples with oranges," the object must clearly be oranges, not other fruits.
- **Completeness of Editing:** Check whether **all parts** of the instruction are fully executed. For multi-step edits (e.g., "replace a red car with a blue bicycle"), both the color change and the object replacement must be done without omissions.
- **Exclusivity of Edit (No Over-Editing):** Ensure that only the requested parts are changed. The rest of the image (as seen in the source) should remain unaltered. For example, if the instruction only involves replacing an object, the background, lighting, and unrelated objects should not be unnecessarily modified.
- **Scoring Criteria:**
- **4 (Very Good):** Perfectly accurate, complete, and exclusive execution of the instruction.
- **3 (Relatively Good):** Largely correct, but with minor omissions or slight over-editing.
- **2 (Relatively Poor):** Major misinterpretation, incomplete edits, or noticeable unintended changes.
- **1 (Very Poor):** Instruction ignored or completely wrong execution.

Dimension 2: Visual Quality & Realism. This dimension focuses on how realistic, artifact-free, and aesthetically appealing the edited image is, while remaining consistent with the source image.
- **Sub-Dimensions to Evaluate:**
- **Plausibility & Physical Consistency:** Check whether the edit aligns with the laws of physics and the scene context. Lighting, shadows, reflections, perspective, size, and interactions with the environment should all appear natural compared to the source image.
- **Artifact-Free Quality:** Look for technical flaws such as blur, distortions, pixel misalignment, unnatural textures, or seams around edited regions. High-quality results should be free from such visible artifacts.
- **Aesthetic Quality:** Evaluate the overall harmony and visual appeal. The image should look natural, balanced, and pleasant. Colors, composition, and atmosphere should enhance the image rather than degrade it.
- **Scoring Criteria:**
- **4 (Very Good):** Perfectly realistic, artifact-free, seamless, and aesthetically pleasing.
- **3 (Relatively Good):** Mostly realistic and clean, with only minor flaws that do not significantly distract.
- **2 (Relatively Poor):** Noticeable physical inconsistencies or visible artifacts that make the edit unnatural.
- **1 (Very Poor):** Severe artifacts, incoherent composition, or visually unusable result."""


@dataclass(frozen=True)
class PromptTemplate:
    """A sequence split at the edited image: ``prefix`` (shared by a group) and ``suffix`` (per candidate)."""

    prefix: str  # holds "{instruction}" and one IMAGE_PLACEHOLDER (the source), or none when the clip carries it
    suffix: str  # holds one IMAGE_PLACEHOLDER (the edited image) and "{reward}"

    @property
    def source_in_prefix(self) -> bool:
        """Whether the prefix shows the source as a still image (not so in the "clip" prompt)."""
        return IMAGE_PLACEHOLDER in self.prefix


PROMPTS: dict[str, PromptTemplate] = {
    # Instruction first, so that the source and the edited image sit a fixed number of positions apart:
    # the same pixel location in both images then has one relative rotary offset whatever the
    # instruction's length, which a backbone trained from scratch needs to compare them.
    "short": PromptTemplate(
        prefix=f"Rate the edit. Instruction: {{instruction}}\nSource:{IMAGE_PLACEHOLDER} Edited:",
        suffix=f"{IMAGE_PLACEHOLDER}{{reward}}",
    ),
    # For edited_input="pair_clip" only: the (source, edited) clip already shows the source, so the prefix is
    # text alone -- half the vision work and a shorter sequence than "short", which also shows it as a still.
    "clip": PromptTemplate(
        prefix="Rate the edit. Instruction: {instruction}\nEdit:",
        suffix=f"{IMAGE_PLACEHOLDER}{{reward}}",
    ),
    "rubric": PromptTemplate(
        prefix=("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" + RUBRIC
                + f"\n\nSource image: {IMAGE_PLACEHOLDER}\nText instruction - {{instruction}}\nEdited image: "),
        suffix=f"{IMAGE_PLACEHOLDER}<|im_end|>\n<|im_start|>assistant\n{{reward}}",
    ),
}


class InputError(ValueError):
    """One edit cannot be turned into model input (empty instruction, undecodable image, over a limit)."""


# What a chat template's control tokens look like (Qwen: <|im_start|>, <|image_pad|>, ...): refused in instructions
# even where no tokenizer is at hand to list its own special tokens.
SPECIAL_TOKEN_PATTERN = re.compile(r"<\|[A-Za-z0-9_]{1,40}\|>")


def load_rgb(image: ImageLike, what: str = "image", limits: InputLimits | None = None) -> Image.Image:
    """A PIL RGB image from a PIL image or a path; raises InputError (naming the file) if it cannot be read or is
    over the limits (``editrl.io.InputLimits``: pixels, aspect ratio)."""
    if isinstance(image, Image.Image):
        problem = image_size_problem(*image.size, limits)
        if problem is not None:
            raise InputError(f"{what}: {problem}")
        return image.convert("RGB") if image.mode != "RGB" else image
    if isinstance(image, (str, Path)):
        from editrl.io import DataError, load_image

        try:
            return load_image(image, limits=limits)
        except DataError as err:
            raise InputError(f"{what}: {err}") from err
    raise InputError(f"{what}: expected a PIL image or a path, got {type(image).__name__}")


def check_instruction(instruction: Any, special_tokens: Sequence[str] = (), limits: InputLimits | None = None) -> str:
    """The instruction, stripped; raises InputError if it is empty, not text (or not valid Unicode), longer than
    ``limits.max_instruction_chars``, or smuggles special tokens (``special_tokens``, or anything shaped like one)."""
    problem = text_problem(instruction, limits)
    if problem is not None:
        raise InputError(f"instruction: {problem.replace('empty instruction', 'empty')}")
    text = instruction.strip()
    for token in special_tokens:
        if token in text:
            raise InputError(f"instruction: contains the special token {token!r}")
    found = SPECIAL_TOKEN_PATTERN.search(text)
    if found:
        raise InputError(f"instruction: contains {found.group()!r}, which has the form of a special token")
    return text


def _clip(source: Image.Image, edited: Image.Image) -> list[Image.Image]:
    """The two frames (source, edited) of a pair clip; frames of a clip share one size, the edited image's."""
    if source.size != edited.size:
        source = source.resize(edited.size, Image.Resampling.BICUBIC)
    return [source, edited]


def video_kwargs(video_processor: Any, size: dict[str, int]) -> dict[str, Any]:
    """Video-processor arguments of a (source, edited) clip: both frames at ``size`` as given, no frame sampling.
    Qwen3-VL's processor (``cap_pixels_per_frame``) is told not to cap a frame's pixels, which it warns about on
    every call when left unset: a clip keeps the images' pixel area."""
    kwargs: dict[str, Any] = {"size": size, "do_sample_frames": False}
    if hasattr(video_processor, "cap_pixels_per_frame"):
        kwargs["cap_pixels_per_frame"] = False
    return kwargs


class RewardInputBuilder:
    """Builds processor batches (full sequences, or group prefixes and candidate suffixes) for the reward model."""

    def __init__(self, processor: Any, model_cfg: RewardModelConfig):
        self.processor = processor
        self.cfg = model_cfg
        self.template = PROMPTS[model_cfg.prompt]
        tokenizer = processor.tokenizer
        self.reward_token_id = tokenizer.convert_tokens_to_ids(model_cfg.reward_token)
        if self.reward_token_id is None or self.reward_token_id == tokenizer.unk_token_id:
            raise ValueError(f"the processor's tokenizer has no reward token {model_cfg.reward_token!r}")
        self._special = tuple(str(t) for t in tokenizer.all_special_tokens) + (model_cfg.reward_token,)

    # -- text ----------------------------------------------------------------------------------------
    def check_instruction(self, instruction: Any) -> str:
        """The clean instruction, or InputError: ``check_instruction`` plus this tokenizer's special tokens and the
        token limit (``limits.max_instruction_tokens``)."""
        limits = input_limits()
        text = check_instruction(instruction, self._special, limits)
        if len(text.encode("utf-8")) > limits.max_instruction_tokens:  # a byte-level BPE token is >= 1 byte
            n = len(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"])
            if n > limits.max_instruction_tokens:
                raise InputError(f"instruction: {n:,} tokens, more than max_instruction_tokens = "
                                 f"{limits.max_instruction_tokens:,} (EDITRL_MAX_INSTRUCTION_TOKENS or "
                                 "limits.max_instruction_tokens)")
        return text

    def prefix_text(self, instruction: str) -> str:
        """Prompt + source placeholder + instruction: what all candidates of a group share."""
        return self.template.prefix.replace("{instruction}", self.check_instruction(instruction))

    def suffix_text(self) -> str:
        """Edited-image placeholder + reward token: what each candidate adds."""
        suffix = self.template.suffix.replace("{reward}", self.cfg.reward_token)
        if self.cfg.edited_input == "pair_clip":
            suffix = suffix.replace(IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER)
        return suffix

    # -- batches -------------------------------------------------------------------------------------
    def __call__(self, sources: Sequence[ImageLike], instructions: Sequence[str],
                 editeds: Sequence[ImageLike]) -> Any:
        """Full sequences for a batch of edits (right-padded BatchFeature of torch tensors)."""
        if not (len(sources) == len(instructions) == len(editeds)):
            raise ValueError(f"sources, instructions, editeds differ in length: "
                             f"{len(sources)}, {len(instructions)}, {len(editeds)}")
        texts = [self.prefix_text(ins) + self.suffix_text() for ins in instructions]
        srcs = [load_rgb(s, "source") for s in sources]
        eds = [load_rgb(e, "edited") for e in editeds]
        if self.cfg.edited_input == "pair_clip":
            stills = srcs if self.template.source_in_prefix else None
            return self._process(texts, stills, [_clip(s, e) for s, e in zip(srcs, eds)])
        return self._process(texts, [im for pair in zip(srcs, eds) for im in pair])

    def prefixes(self, sources: Sequence[ImageLike], instructions: Sequence[str]) -> Any:
        """The shared part of each group: prompt, source image, instruction (right-padded)."""
        texts = [self.prefix_text(ins) for ins in instructions]
        if not self.template.source_in_prefix:
            return self._process(texts, None)
        return self._process(texts, [load_rgb(s, "source") for s in sources])

    def suffixes(self, editeds: Sequence[ImageLike], sources: Sequence[ImageLike] | None = None) -> Any:
        """The per-candidate part: edited image (or its (source, edited) clip) and reward token (right-padded).

        ``sources`` (one per edited image) is needed when ``edited_input`` is ``pair_clip``."""
        eds = [load_rgb(e, "edited") for e in editeds]
        texts = [self.suffix_text()] * len(eds)
        if self.cfg.edited_input != "pair_clip":
            return self._process(texts, eds)
        if sources is None or len(sources) != len(eds):
            raise ValueError("edited_input='pair_clip': suffixes need the source image of every edited image")
        return self._process(texts, None, [_clip(load_rgb(s, "source"), e) for s, e in zip(sources, eds)])

    def _process(self, texts: list[str], images: list[Image.Image] | None,
                 clips: list[list[Image.Image]] | None = None) -> Any:
        area = self.cfg.pixel_area
        size = {"shortest_edge": area, "longest_edge": area}
        kwargs: dict[str, Any] = {"images_kwargs": {"size": size}}
        if clips is not None:
            kwargs["videos"] = clips
            kwargs["videos_kwargs"] = video_kwargs(getattr(self.processor, "video_processor", None), size)
        return self.processor(text=texts, images=images, padding=True, padding_side="right", return_tensors="pt",
                              **kwargs)
