"""Editing tasks: a source scene plus one edit, with the exact target — the unit every stage works on."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image

from editworld.instructions import EditOp, apply_edit, sample_edit
from editworld.scene import Scene, render, sample_scene

HELD_OUT_SEED = 1_000_003  # evaluation tasks; training data uses other seeds


@dataclass(frozen=True)
class Task:
    scene: Scene
    op: EditOp

    @property
    def instruction(self) -> str:
        return self.op.text

    @cached_property
    def target_scene(self) -> Scene:
        return apply_edit(self.scene, self.op)

    def source_array(self, size: int = 32) -> np.ndarray:
        """(size, size, 3) uint8, read-only (renders are cached)."""
        return render(self.scene, size)

    def target_array(self, size: int = 32) -> np.ndarray:
        """(size, size, 3) uint8, read-only (renders are cached)."""
        return render(self.target_scene, size)

    def source_image(self, size: int = 32) -> Image.Image:
        return Image.fromarray(self.source_array(size))

    def target_image(self, size: int = 32) -> Image.Image:
        return Image.fromarray(self.target_array(size))

    def to_dict(self) -> dict:
        return {"scene": self.scene.to_dict(), "op": self.op.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "Task":
        return cls(Scene.from_dict(d["scene"]), EditOp.from_dict(d["op"]))


def sample_task(rng: np.random.Generator, size: int = 32) -> Task:
    """A random task whose edit is visible at ``size`` (e.g. a move against the border is redrawn)."""
    while True:
        scene = sample_scene(rng)
        task = Task(scene, sample_edit(scene, rng))
        if (task.source_array(size) != task.target_array(size)).any():
            return task


def sample_tasks(n: int, seed: int, size: int = 32) -> list[Task]:
    """``n`` tasks, each from its own seeded stream (task i is the same whatever ``n`` is)."""
    return [sample_task(np.random.default_rng([seed, i]), size) for i in range(n)]
