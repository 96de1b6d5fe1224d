"""Settings of an editworld dataset (saved as config.yaml beside it; presets in configs/world/) and of an
editor-samples dataset (`editrl world editor-samples`, saved as config.json beside it)."""

from dataclasses import dataclass
from typing import Literal

EDITOR_SAMPLE_SEED = 5_000_011  # task seed of on-policy reward data: apart from HELD_OUT_SEED and the RL task seeds


@dataclass
class WorldConfig:
    groups: int = 200  # (source, instruction) groups, each with `candidates` edits
    seed: int = 0  # everything derives from it: same seed, byte-identical manifests
    size: int = 32  # image side in pixels
    candidates: int = 7  # candidates per group (the paper samples 7 of 12)
    bench_fraction: float = 0.2  # share of groups in the 3-annotator benchmark split
    annotator_flip: float = 0.25  # probability that an annotator is off by one
    workers: int = 2  # processes writing groups (1 = in-process); the output does not depend on it


@dataclass
class EditorSampleConfig:
    """What `editrl world editor-samples` writes (saved as config.json beside the data)."""

    tasks: int = 1000  # (source, instruction) groups
    per_noise: int = 2  # samples per noise level and task
    noise_levels: tuple[float, ...] = (0.0, 0.3, 0.7)  # 0 = ODE (candidates differ in their initial noise)
    num_steps: int = 8  # denoising steps of each sample
    sde_window: int = 0  # > 0: SDE samples use a window of this many SDE steps, as the RL presets sample (0: all SDE)
    seed: int = EDITOR_SAMPLE_SEED  # task seed; the sampling seed derives from it
    size: int = 32  # image side in pixels
    annotator_noise: float = 0.25  # std of the simulated annotator around the oracle score
    tie_margin: float = 0.1  # pairs whose overall ratings differ by less are ties
    batch_size: int = 64  # images sampled per editor call
    split: Literal["train", "bench"] = "train"  # manifest split: "train" for reward training, "bench" to evaluate with `editrl reward eval`
