"""Settings of an editworld dataset (saved as config.yaml beside it; presets in configs/world/)."""

from dataclasses import dataclass


@dataclass
class WorldConfig:
    groups: int = 200  # (source, instruction) groups, each with `candidates` edits
    seed: int = 0  # everything derives from it: same seed, byte-identical manifests
    size: int = 32  # image side in pixels
    candidates: int = 7  # candidates per group (the paper samples 7 of 12)
    bench_fraction: float = 0.2  # share of groups in the 3-annotator benchmark split
    annotator_flip: float = 0.25  # probability that an annotator is off by one
    workers: int = 2  # processes writing groups (1 = in-process); the output does not depend on it
