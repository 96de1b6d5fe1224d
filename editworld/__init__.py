"""editworld: a procedural image-editing world with exact ground truth (scenes, instructions, simulated
editors and annotators, a pixel-level oracle). Light to import: submodules load numpy and PIL only."""

DIMENSIONS = ("instruction_following", "visual_quality")
