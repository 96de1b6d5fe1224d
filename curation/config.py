"""Configuration of a curation run: which dataset, which reward model, where to write, what to keep.

Input layouts (``input_format``):

- ``"editrl"``: a ``manifest.jsonl`` (or the folder holding one) whose rows have ``source``,
  ``instruction`` and the edited image under ``edited`` (editworld candidate manifests) or, when a row
  has no ``edited``, under ``target`` (SFT manifests of ``{source, instruction, target}``). ``id`` is
  used when present, otherwise ``L<line>``. Image paths are relative to the manifest's folder.
- ``"folder"``: the Hugging Face *imagefolder* layout used by exports of open editing datasets
  (InstructPix2Pix, MagicBrush, OmniEdit, ...): a folder with ``metadata.jsonl`` (streamed) or
  ``metadata.json`` (a JSON list, read whole) whose rows name the images relative to the folder. The
  first present column of each alias list below is used:
  source ``source_image | input_image | source_img | src_img | original_image``,
  instruction ``instruction | edit_prompt | edit_instruction | prompt``,
  edited ``edited_image | output_image | target_img | edited_img | target_image``;
  id ``id | img_id | file_name`` (else ``L<line>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from editrl.config import ConfigError
from editrl.io import InputLimits, input_limits


@dataclass
class SelectionConfig:
    """What to keep. Filters (``min_dims``, ``threshold``) apply first, then at most one count limit."""

    top_k: int | None = None  # keep the K best rows (by the ranking key), after the filters
    top_fraction: float | None = None  # keep round(F * scored rows) best rows, after the filters
    threshold: float | None = None  # keep rows whose ranking key is >= this
    min_dims: dict[str, float] = field(default_factory=dict)  # per-dimension minimum of mu, e.g. {visual_quality: 2.5}
    uncertainty_k: float = 0.0  # ranking key = score - k * score_sigma (0: rank by the mean)

    def __post_init__(self) -> None:
        if self.top_k is not None and self.top_fraction is not None:
            raise ConfigError("selection: give top_k or top_fraction, not both")
        if self.top_k is not None and self.top_k < 0:
            raise ConfigError(f"selection.top_k: must be >= 0, got {self.top_k}")
        if self.top_fraction is not None and not 0.0 <= self.top_fraction <= 1.0:
            raise ConfigError(f"selection.top_fraction: must be in [0, 1], got {self.top_fraction}")
        if self.uncertainty_k < 0:
            raise ConfigError(f"selection.uncertainty_k: must be >= 0, got {self.uncertainty_k}")
        self.min_dims = {str(k): float(v) for k, v in self.min_dims.items()}


@dataclass
class CurateConfig:
    """One ``editrl curate`` run."""

    input: str = ""  # dataset: a manifest.jsonl, or a folder (see input_format)
    input_format: Literal["editrl", "folder"] = "editrl"  # layout of `input` (module docstring)
    reward: str = "reward/weights/editworld-tiny"  # reward checkpoint folder, or ray://NAME[@ADDRESS]
    device: str | None = None  # torch device of an in-process reward model (default: CPU)
    out: str = "runs/curate"  # output folder (scores.jsonl, rejects.jsonl, kept.jsonl, summary.json, PNGs)
    batch_size: int = 64  # rows sent to the reward client per call
    selection: SelectionConfig = field(default_factory=SelectionConfig)  # what to keep
    grid_k: int = 8  # the image grid shows the K lowest and K highest examples
    limits: InputLimits = field(default_factory=input_limits)  # largest image / instruction a row may have (default: EDITRL_MAX_*)
    progress: bool = True  # tqdm progress bar
    seed: int = 0  # reserved for sampling choices (the random-subset baseline of table 3)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: must be >= 1, got {self.batch_size}")
