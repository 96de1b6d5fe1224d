"""Simulated editors: candidate edits with known failure modes and their true 1-4 scores.

Instruction-following (IF) failures, with the rubric score they earn (paper appendix A.2):
    none           the exact target                                   4
    no_op          the source returned unchanged                      1
    wrong_object   the edit applied to another shape                  1
    wrong_colour   right object / background, wrong colour            2
    partial        half-done: a blend, half a move, a faded removal   3 (severity 1) / 2
    over_edit      the edit plus an unrequested change                3 (severity 1) / 2
Visual-quality (VQ) failures at severity 1-3 score 4 - severity: noise, blur, blockiness, colour_cast,
halo (a seam around the edited region). A candidate may carry one failure of each kind.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from editworld.instructions import DIRECTIONS, POSITIONS, EditOp, apply_edit
from editworld.oracle import artefact_badness, oracle_scores, palette_distance
from editworld.regions import box_blur, dilate, edit_region
from editworld.scene import BACKGROUNDS, COLOURS, Scene, Shape, render
from editworld.tasks import Task

IF_FAILURES = ("none", "no_op", "wrong_object", "wrong_colour", "partial", "over_edit")
VQ_FAILURES = ("none", "noise", "blur", "blockiness", "colour_cast", "halo")
_IF_PROBS = (0.34, 0.12, 0.10, 0.14, 0.15, 0.15)
_VQ_PROBS = (0.40, 0.12, 0.12, 0.12, 0.12, 0.12)


@dataclass(frozen=True)
class Candidate:
    image: np.ndarray  # (H, W, 3) uint8
    if_failure: str
    if_severity: int
    vq_failure: str
    vq_severity: int
    scores: dict[str, int]

    def editor_info(self) -> dict:
        return {"if_failure": self.if_failure, "if_severity": self.if_severity,
                "vq_failure": self.vq_failure, "vq_severity": self.vq_severity}


def _other_shape(scene: Scene, name: str | None, rng: np.random.Generator) -> int | None:
    others = [i for i, s in enumerate(scene.shapes) if s.name != name]
    return others[int(rng.integers(len(others)))] if others else None


def _wrong_colour(op: EditOp, rng: np.random.Generator) -> EditOp | None:
    if op.verb == "recolour" or op.verb == "add":
        pool = [c for c in COLOURS if c != op.colour and (op.target is None or not op.target.startswith(c + " "))]
    elif op.verb == "background":
        pool = [b for b in BACKGROUNDS if b != op.colour]
    else:
        return None
    return replace(op, colour=pool[int(rng.integers(len(pool)))])


def _if_image(task: Task, failure: str, severity: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """The image for an instruction-following failure (falls back to a valid failure when one does not apply)."""
    scene, op = task.scene, task.op
    if failure == "none":
        return task.target_array(size), failure
    if failure == "no_op":
        return task.source_array(size), failure
    if failure == "wrong_colour":
        wrong = _wrong_colour(op, rng)
        if wrong is None:
            return _if_image(task, "wrong_object", severity, size, rng)
        return render(apply_edit(scene, wrong), size), failure
    if failure == "wrong_object":
        if op.verb in ("add", "background"):
            return _if_image(task, "wrong_colour", severity, size, rng)
        j = _other_shape(scene, op.target, rng)
        if j is None:
            return task.source_array(size), "no_op"
        other = scene.shapes[j]
        if op.verb == "move":
            dx, dy = DIRECTIONS[op.where]
            moved = replace(other, x=float(np.clip(other.x + dx * 0.3, other.r, 1 - other.r)),
                            y=float(np.clip(other.y + dy * 0.3, other.r, 1 - other.r)))
            return render(scene.replace_shape(j, moved), size), failure
        if op.verb == "recolour":
            colour = op.colour if op.colour != other.colour else _wrong_colour(op, rng).colour
            return render(scene.replace_shape(j, replace(other, colour=colour)), size), failure
        return render(scene.replace_shape(j, None), size), failure
    if failure == "partial":
        if op.verb == "move":
            return render(apply_edit(scene, op, amount=0.5 if severity == 1 else 0.3), size), failure
        if op.verb == "add":
            x, y = POSITIONS[op.where]
            small = Shape(op.kind, op.colour, x, y, round(0.14 * (0.7, 0.5, 0.35)[severity - 1], 3))
            return render(replace(scene, shapes=scene.shapes + (small,)), size), failure
        # only a band of the edited region changes; the rest keeps the source
        src, out = task.source_array(size), task.target_array(size).copy()
        rows = np.flatnonzero(edit_region(task, size).any(1))
        cut = rows[0] + int(round(len(rows) * (0.3, 0.5, 0.65)[severity - 1]))
        out[:cut] = src[:cut]
        return out, failure
    if failure == "over_edit":
        edited = task.target_scene
        j = _other_shape(edited, op.target if op.verb != "add" else f"{op.colour} {op.kind}", rng)
        if j is None:
            return render(replace(edited, background=[b for b in BACKGROUNDS if b != edited.background][0]), size), failure
        other = edited.shapes[j]
        if severity == 1:
            extra = edited.replace_shape(j, replace(other, x=float(np.clip(other.x + 0.12, other.r, 1 - other.r))))
        elif severity == 2:
            pool = [c for c in COLOURS if c != other.colour]
            extra = edited.replace_shape(j, replace(other, colour=pool[int(rng.integers(len(pool)))]))
        else:
            extra = edited.replace_shape(j, None)
        return render(extra, size), failure
    raise ValueError(f"unknown instruction-following failure {failure!r}")


_IF_RUBRIC = {"none": (4, 4), "no_op": (1, 1), "wrong_object": (1, 1), "wrong_colour": (1, 2),
              "partial": (2, 3), "over_edit": (2, 3)}


def true_instruction_following(task: Task, clean: np.ndarray, failure: str, severity: int) -> int:
    """The rubric score of an instruction-following failure. Categorical failures have a fixed score;
    graded ones (how much of the edit was done, how large the unrequested change) are placed inside
    their rubric range by the exact extent, measured on the artefact-free image."""
    lo, hi = _IF_RUBRIC[failure]
    if lo == hi:
        return lo
    return int(np.clip(np.round(oracle_scores(task, clean)["instruction_following"]), lo, hi))


def apply_artefact(img: np.ndarray, failure: str, severity: int, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Degrade an image with a visual-quality failure of severity 1 (mild) to 3 (severe)."""
    if failure == "none":
        return img
    x = img.astype(np.float32)
    h = x.shape[0]
    if failure == "noise":
        x = x + rng.normal(0, (4, 8, 13)[severity - 1], x.shape)
    elif failure == "blur":
        blurred = x
        for _ in range((1, 1, 4)[severity - 1]):
            blurred = box_blur(blurred, 1)
        x = 0.5 * x + 0.5 * blurred if severity == 1 else blurred
    elif failure == "blockiness":
        b = (2, 4, 6)[severity - 1] * max(1, h // 32)
        hb = h // b
        blocks = x[: hb * b, : hb * b].reshape(hb, b, hb, b, 3).mean((1, 3))
        x[: hb * b, : hb * b] = np.repeat(np.repeat(blocks, b, 0), b, 1)
    elif failure == "colour_cast":
        tint = rng.normal(0, 1, 3)
        tint = tint / (np.linalg.norm(tint) + 1e-6) * (20, 40, 65)[severity - 1]
        x = x + tint
    elif failure == "halo":
        base = region if region.any() else np.pad(np.ones((h - 8, h - 8), bool), 4)
        ring = dilate(base, (1, 1, 2)[severity - 1]) & ~base
        seam = np.array((200.0, 255.0, 110.0)) if x[ring].mean() < 128 else np.array((90.0, 40.0, 0.0))
        mix = (0.8, 1.0, 1.0)[severity - 1]
        x[ring] = (1 - mix) * x[ring] + mix * seam
    else:
        raise ValueError(f"unknown visual-quality failure {failure!r}")
    return np.clip(x, 0, 255).round().astype(np.uint8)


def make_candidate(task: Task, if_failure: str, if_severity: int, vq_failure: str, vq_severity: int,
                   size: int, rng: np.random.Generator) -> Candidate:
    clean, if_failure = _if_image(task, if_failure, if_severity, size, rng)
    img = apply_artefact(clean, vq_failure, vq_severity, edit_region(task, size), rng).copy()
    scores = {"instruction_following": true_instruction_following(task, clean, if_failure, if_severity),
              "visual_quality": true_visual_quality(clean, img) if vq_failure != "none" else 4}
    return Candidate(img, if_failure, if_severity if if_failure in ("partial", "over_edit") else 0,
                     vq_failure, vq_severity if vq_failure != "none" else 0, scores)


def true_visual_quality(clean: np.ndarray, degraded: np.ndarray) -> int:
    """The rubric score of an artefact, from how visible it actually is on this image (the same blur
    is worse on a busy scene than on an empty one): the off-palette energy along the clean image's true
    edges and flat areas, plus the exact colour cast; 4 = invisible, 3 = minor, 2 = clear, 1 = severe."""
    diff = degraded.astype(np.float32) - clean.astype(np.float32)
    cast = np.median(diff.reshape(-1, 3), axis=0)
    dist = palette_distance(degraded.astype(np.float32) - cast)
    badness = artefact_badness(dist, clean, clean, cast)
    return int(np.clip(np.round(np.interp(badness, (1.5, 6.0, 12.0, 19.0), (4.0, 3.0, 2.0, 1.0))), 1, 4))


def sample_candidate(task: Task, size: int, rng: np.random.Generator) -> Candidate:
    """One candidate from a random simulated editor (failure modes drawn at the rates above)."""
    f_if = IF_FAILURES[int(rng.choice(len(IF_FAILURES), p=_IF_PROBS))]
    f_vq = VQ_FAILURES[int(rng.choice(len(VQ_FAILURES), p=_VQ_PROBS))]
    return make_candidate(task, f_if, int(rng.integers(1, 4)), f_vq, int(rng.integers(1, 4)), size, rng)


def sample_group(task: Task, k: int, size: int, rng: np.random.Generator) -> list[Candidate]:
    return [sample_candidate(task, size, rng) for _ in range(k)]
