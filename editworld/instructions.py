"""The instruction grammar: edit operations, their English text, parsing, and applying them to a scene.

    recolour    "make the red circle blue"
    remove      "remove the green square"
    add         "add a yellow triangle at the top left"
    move        "move the blue circle to the right"
    background  "change the background to white"
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace

import numpy as np

from editworld.scene import BACKGROUNDS, COLOURS, SHAPES, Scene, Shape

VERBS = ("recolour", "remove", "add", "move", "background")
POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (0.25, 0.25), "top right": (0.75, 0.25), "bottom left": (0.25, 0.75),
    "bottom right": (0.75, 0.75), "center": (0.5, 0.5),
}
DIRECTIONS: dict[str, tuple[float, float]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
MOVE_STEP = 0.3
# Every word the grammar can produce (editor tokenizers build their vocabulary from this).
VOCABULARY = sorted(
    set("make the remove add a at move to change background".split())
    | set(COLOURS) | set(BACKGROUNDS) | set(SHAPES) | set(DIRECTIONS)
    | {w for p in POSITIONS for w in p.split()}
)


class InstructionError(ValueError):
    """An instruction the grammar cannot read or the scene cannot satisfy."""


@dataclass(frozen=True)
class EditOp:
    verb: str
    target: str | None = None  # "red circle": the shape the edit acts on
    colour: str | None = None  # new colour (recolour, add) or background name
    kind: str | None = None  # shape kind to add
    where: str | None = None  # position (add) or direction (move)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EditOp":
        if d.get("verb") not in VERBS:
            raise InstructionError(f"unknown instruction verb {d.get('verb')!r}; expected one of {VERBS}")
        return cls(**d)

    @property
    def text(self) -> str:
        if self.verb == "recolour":
            return f"make the {self.target} {self.colour}"
        if self.verb == "remove":
            return f"remove the {self.target}"
        if self.verb == "add":
            return f"add a {self.colour} {self.kind} at the {self.where}"
        if self.verb == "move":
            return f"move the {self.target} to the {self.where}" if self.where in ("left", "right") else f"move the {self.target} {self.where}"
        return f"change the background to {self.colour}"


_C = "|".join(COLOURS)
_K = "|".join(SHAPES)
_PATTERNS = [
    ("recolour", re.compile(rf"make the (?P<target>(?:{_C}) (?:{_K})) (?P<colour>{_C})")),
    ("remove", re.compile(rf"remove the (?P<target>(?:{_C}) (?:{_K}))")),
    ("add", re.compile(rf"add a (?P<colour>{_C}) (?P<kind>{_K}) at the (?P<where>{'|'.join(POSITIONS)})")),
    ("move", re.compile(rf"move the (?P<target>(?:{_C}) (?:{_K})) (?:to the )?(?P<where>left|right|up|down)")),
    ("background", re.compile(rf"change the background to (?P<colour>{'|'.join(BACKGROUNDS)})")),
]
_VERB_WORDS = {"make": "recolour", "remove": "remove", "add": "add", "move": "move", "change": "background"}


def parse_instruction(text: str) -> EditOp:
    """Read an instruction back into an EditOp; an unknown verb or phrase is an InstructionError naming it."""
    clean = " ".join(text.lower().strip().rstrip(".").split())
    if not clean:
        raise InstructionError("empty instruction")
    first = clean.split()[0]
    if first not in _VERB_WORDS:
        raise InstructionError(f"unknown instruction verb {first!r} in {text!r}; expected one of {sorted(_VERB_WORDS)}")
    verb = _VERB_WORDS[first]
    for name, pattern in _PATTERNS:
        if name == verb and (m := pattern.fullmatch(clean)):
            return EditOp(verb=verb, **m.groupdict())
    raise InstructionError(f"cannot parse {verb} instruction {text!r}")


def find_shape(scene: Scene, name: str) -> int:
    for i, s in enumerate(scene.shapes):
        if s.name == name:
            return i
    raise InstructionError(f"the scene has no {name}")


def apply_edit(scene: Scene, op: EditOp, amount: float = 1.0) -> Scene:
    """The scene after the edit; ``amount`` < 1 moves only part of the way (used for partial edits)."""
    if op.verb == "background":
        return replace(scene, background=op.colour)
    if op.verb == "add":
        x, y = POSITIONS[op.where]
        return replace(scene, shapes=scene.shapes + (Shape(op.kind, op.colour, x, y, 0.14),))
    i = find_shape(scene, op.target)
    s = scene.shapes[i]
    if op.verb == "remove":
        return scene.replace_shape(i, None)
    if op.verb == "recolour":
        return scene.replace_shape(i, replace(s, colour=op.colour))
    dx, dy = DIRECTIONS[op.where]
    x = float(np.clip(s.x + dx * MOVE_STEP * amount, s.r, 1 - s.r))
    y = float(np.clip(s.y + dy * MOVE_STEP * amount, s.r, 1 - s.r))
    return scene.replace_shape(i, replace(s, x=round(x, 3), y=round(y, 3)))


def sample_edit(scene: Scene, rng: np.random.Generator) -> EditOp:
    """A random edit that is valid in the scene and changes it visibly."""
    while True:
        verb = VERBS[int(rng.integers(len(VERBS)))]
        if verb == "background":
            choices = [b for b in BACKGROUNDS if b != scene.background]
            return EditOp("background", colour=choices[int(rng.integers(len(choices)))])
        if verb == "add":
            names = {s.name for s in scene.shapes}
            colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
            kind = SHAPES[int(rng.integers(len(SHAPES)))]
            if f"{colour} {kind}" in names:
                continue
            return EditOp("add", colour=colour, kind=kind, where=list(POSITIONS)[int(rng.integers(len(POSITIONS)))])
        s = scene.shapes[int(rng.integers(len(scene.shapes)))]
        if verb == "remove":
            return EditOp("remove", target=s.name)
        if verb == "recolour":
            taken = {t.name for t in scene.shapes}
            choices = [c for c in COLOURS if c != s.colour and f"{c} {s.kind}" not in taken]
            return EditOp("recolour", target=s.name, colour=choices[int(rng.integers(len(choices)))])
        dirs = [d for d, (dx, dy) in DIRECTIONS.items()
                if s.r <= s.x + dx * MOVE_STEP <= 1 - s.r and s.r <= s.y + dy * MOVE_STEP <= 1 - s.r]
        if dirs:
            return EditOp("move", target=s.name, where=dirs[int(rng.integers(len(dirs)))])
