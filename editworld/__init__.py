"""editworld: a procedural image-editing world with exact ground truth (scenes, instructions, simulated
editors and annotators, a pixel-level oracle). Light to import: submodules load numpy and PIL only."""

from editrl.dimensions import DIMENSIONS  # re-exported: `from editworld import DIMENSIONS`

__all__ = ["DIMENSIONS"]
