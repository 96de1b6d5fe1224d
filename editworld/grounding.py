"""Scene-grounded pretraining examples: an image pair, a question, and the answer read off the scene graphs.

What a VLM's pretraining teaches before it becomes a reward model — which colours and shapes are where, what
changed between two images, whether an instruction was carried out, whether an image is degraded — labelled
exactly from the editworld's scenes. Two kinds of question, both about a (source, edited) pair:

    describe   "Describe the edit."                     -> "changed: make the red circle blue; quality: clean;
                                                             after: white background, blue circle top left, ..."
    verify     "Was it done? Instruction: remove ..."   -> "yes" | "partly" | "no"

``describe`` pairs are exact scene edits (the instruction's, another random one, or none), so the change is
known in the grammar's own words; ``verify`` pairs come from the simulated editors' failure modes. Answers are
facts about the images (which failure was drawn), never the oracle's or the annotators' scores. Tasks are drawn
from their own seed stream, apart from the held-out tasks and the dataset seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from editworld.editors import IF_FAILURES, VQ_FAILURES, apply_artefact, make_candidate
from editworld.instructions import sample_edit
from editworld.regions import edit_region
from editworld.scene import Scene, render
from editworld.tasks import Task, sample_task

GROUNDING_SEED = 7_000_001  # task stream of the pretraining examples (datasets use small seeds; held-out 1_000_003)
DESCRIBE_PROMPT = "Describe the edit.\nEdit:"
VERIFY_PROMPT = "Was it done? Instruction: {instruction}\nEdit:"
VERDICTS = {"none": "yes", "partial": "partly", "over_edit": "partly", "no_op": "no", "wrong_object": "no",
            "wrong_colour": "no"}
_ROWS = ("top", "", "bottom")
_COLS = ("left", "", "right")


@dataclass(frozen=True)
class GroundedExample:
    """One pretraining example: the pair, the prompt before the pair and the answer after it."""

    source: np.ndarray  # (size, size, 3) uint8
    edited: np.ndarray  # (size, size, 3) uint8
    prompt: str
    answer: str
    kind: str  # "describe" or "verify"


def position_word(x: float, y: float) -> str:
    """Where a shape centre lies on a 3x3 grid: "top left", "top", ..., "center", ..., "bottom right"."""
    row, col = _ROWS[min(int(y * 3), 2)], _COLS[min(int(x * 3), 2)]
    return " ".join(w for w in (row, col) if w) or "center"


def caption(scene: Scene) -> str:
    """The scene in words: background, then each shape with its grid position, in drawing order."""
    return ", ".join([f"{scene.background} background"]
                     + [f"{s.colour} {s.kind} {position_word(s.x, s.y)}" for s in scene.shapes])


def _quality(clean: np.ndarray, task: Task, size: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    failure = VQ_FAILURES[int(rng.integers(len(VQ_FAILURES)))]
    if failure == "none":
        return clean, "clean"
    severity = int(rng.integers(1, 4))
    return apply_artefact(clean, failure, severity, edit_region(task, size), rng), f"{failure} {severity}"


def describe_example(task: Task, size: int, rng: np.random.Generator) -> GroundedExample:
    """The pair shows the task's edit, another random edit of the same scene, or no edit; the answer names it."""
    draw = rng.random()
    if draw < 0.5:
        edited_scene, change = task.target_scene, task.instruction
    elif draw < 0.8:
        other = Task(task.scene, sample_edit(task.scene, rng))
        edited_scene, change = other.target_scene, other.instruction
    else:
        edited_scene, change = task.scene, "nothing"
    image, quality = _quality(render(edited_scene, size), task, size, rng)
    answer = f"changed: {change}; quality: {quality}; after: {caption(edited_scene)}"
    return GroundedExample(task.source_array(size), image, DESCRIBE_PROMPT, answer, "describe")


def verify_example(task: Task, size: int, rng: np.random.Generator) -> GroundedExample:
    """A simulated editor's attempt at the instruction (any failure mode, half of them degraded); the answer is
    whether the edit was done, half-done or over-done, or not done."""
    failure = IF_FAILURES[int(rng.integers(len(IF_FAILURES)))]
    vq = VQ_FAILURES[int(rng.integers(len(VQ_FAILURES)))] if rng.random() < 0.5 else "none"
    cand = make_candidate(task, failure, int(rng.integers(1, 4)), vq, int(rng.integers(1, 4)), size, rng)
    prompt = VERIFY_PROMPT.format(instruction=task.instruction)
    return GroundedExample(task.source_array(size), cand.image, prompt, VERDICTS[cand.if_failure], "verify")


def grounded_example(seed: int, index: int, size: int = 32, describe_share: float = 0.5) -> GroundedExample:
    """Example ``index`` of stream ``seed``: a pure function of both (a resumed run sees the same examples)."""
    rng = np.random.default_rng([GROUNDING_SEED, seed, index])
    task = sample_task(rng, size)
    if rng.random() < describe_share:
        return describe_example(task, size, rng)
    return verify_example(task, size, rng)
