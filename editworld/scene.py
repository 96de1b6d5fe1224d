"""Scenes of a background and a few flat-coloured shapes, and their exact rendering.

Coordinates are in [0, 1] (shape centre and half-size), so one scene renders at any size. Renders use
only palette colours (no anti-aliasing): any off-palette pixel in an image is an artefact, which is
what the oracle's visual-quality measure relies on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 220, 40),
    "purple": (150, 60, 190),
    "orange": (250, 140, 20),
    "cyan": (40, 200, 210),
    "pink": (250, 130, 190),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
    "beige": (225, 205, 160),
}
SHAPES = ("circle", "square", "triangle")
PALETTE = np.array(list(COLOURS.values()) + list(BACKGROUNDS.values()), dtype=np.float32)


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    x: float  # centre, 0 = left
    y: float  # centre, 0 = top
    r: float  # half-size

    @property
    def name(self) -> str:
        return f"{self.colour} {self.kind}"


@dataclass(frozen=True)
class Scene:
    background: str
    shapes: tuple[Shape, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {"background": self.background, "shapes": [asdict(s) for s in self.shapes]}

    @classmethod
    def from_dict(cls, d: dict) -> "Scene":
        return cls(d["background"], tuple(Shape(**s) for s in d["shapes"]))

    def replace_shape(self, index: int, shape: Shape | None) -> "Scene":
        shapes = list(self.shapes)
        if shape is None:
            shapes.pop(index)
        else:
            shapes[index] = shape
        return replace(self, shapes=tuple(shapes))


def shape_mask(shape: Shape, size: int) -> np.ndarray:
    """Boolean (size, size) mask of the pixels a shape covers."""
    yy, xx = _grid(size)
    dx, dy = xx - shape.x, yy - shape.y
    if shape.kind == "circle":
        return dx * dx + dy * dy <= shape.r * shape.r
    if shape.kind == "square":
        return (np.abs(dx) <= shape.r * 0.9) & (np.abs(dy) <= shape.r * 0.9)
    if shape.kind == "triangle":  # apex up, base at y + r
        t = (dy + shape.r) / (2 * shape.r)
        return (t >= 0) & (t <= 1) & (np.abs(dx) <= shape.r * t)
    raise ValueError(f"unknown shape kind {shape.kind!r}; expected one of {SHAPES}")


@lru_cache(maxsize=64)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    return tuple(np.meshgrid(c, c, indexing="ij"))


@lru_cache(maxsize=4096)
def render(scene: Scene, size: int = 32) -> np.ndarray:
    """Exact (size, size, 3) uint8 render, later shapes on top; cached and read-only (copy to modify)."""
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[:] = BACKGROUNDS[scene.background]
    for s in scene.shapes:
        img[shape_mask(s, size)] = COLOURS[s.colour]
    img.setflags(write=False)
    return img


def sample_scene(rng: np.random.Generator) -> Scene:
    """2-4 shapes with distinct (colour, kind) names, so that 'the red circle' always means one shape."""
    n = int(rng.integers(2, 5))
    names: set[tuple[str, str]] = set()
    shapes = []
    colours = list(COLOURS)
    while len(shapes) < n:
        kind = SHAPES[int(rng.integers(len(SHAPES)))]
        colour = colours[int(rng.integers(len(colours)))]
        if (colour, kind) in names:
            continue
        names.add((colour, kind))
        r = float(rng.uniform(0.11, 0.18))
        shapes.append(Shape(kind, colour, round(float(rng.uniform(r, 1 - r)), 3), round(float(rng.uniform(r, 1 - r)), 3), round(r, 3)))
    return Scene(list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))], tuple(shapes))
