"""The pixel-level oracle: scores *any* image of a task for instruction following and visual quality.

It knows the scene graph, so it is the independent ground truth used to measure curation, RL and
best-of-N, and to catch reward hacking. Both scores are continuous in [1, 4].

* Instruction following compares the image with the source and the exact target, after removing a
  global colour cast and smoothing away pixel noise: how far the edited region moved from the source
  towards the target (``progress``), minus how much of the rest of the image changed (``spill``).
* Visual quality measures artefacts: exact renders contain only palette colours, so the mean distance
  of pixels to the nearest palette colour (after cast removal) measures noise, blur, blockiness and
  seams, and the cast itself is measured separately.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

from editworld.regions import box_blur, dilate, edit_region
from editworld.scene import PALETTE
from editworld.tasks import Task

# piecewise-linear maps from the measurements to the 1-4 rubric, calibrated on the simulated editors
_IF_KNOTS = (0.05, 0.4, 0.65, 0.9)
_VQ_KNOTS = (1.5, 6.0, 12.0, 19.0)
_EDGE_WEIGHT = 0.35
_SPILL_WEIGHT = 4.0  # a changed share of the untouched area costs this much progress


def _as_array(image: Image.Image | np.ndarray, size: int) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    img = np.asarray(image)
    if img.shape[:2] != (size, size):
        img = np.asarray(Image.fromarray(img.astype(np.uint8)).resize((size, size), Image.BILINEAR))
    return img.astype(np.float32)


def oracle_details(task: Task, image: Image.Image | np.ndarray) -> dict[str, float]:
    """The oracle's measurements (progress, spill, artefact, cast) and its two scores."""
    size = _size(image) or 32
    tgt = task.target_array(size).astype(np.float32)
    img = _as_array(image, size)

    # colour cast: the median offset over pixels where source and target agree (the untouched part)
    keep = ~dilate(edit_region(task, size), 1)
    ref = keep if keep.sum() >= 8 else ~edit_region(task, size)
    cast = np.median((img - tgt)[ref], axis=0) if ref.any() else np.zeros(3, np.float32)
    img_c = img - cast

    # instruction following on smoothed images (robust to noise and small artefacts): how far the edited
    # region got from the source to the target (1 = exactly, 0 = unchanged), at the pixel scale and at a
    # coarse scale (blocks and blur hide pixel detail but not an edit), keeping the better of the two
    region = edit_region(task, size)
    coarse = box_blur(img_c, 2)
    progress = max(_progress(_median3(img_c), *_references(task, size, "median"), region),
                   _progress(coarse, *_references(task, size, "blur"), region))
    # spill: share of the untouched area that visibly changed
    outside = ~dilate(region, 3)
    d_out = np.linalg.norm(coarse - _references(task, size, "blur")[0], axis=-1)
    spill = float((d_out[outside] > 50).mean()) if outside.any() else 0.0
    if_quality = progress - _SPILL_WEIGHT * spill
    instruction_following = float(np.interp(if_quality, _IF_KNOTS, (1.0, 2.0, 3.0, 4.0)))

    # visual quality: off-palette energy plus the cast
    dist, nearest = palette_distance(img_c, return_nearest=True)
    clean_guess = _median3(PALETTE[nearest])  # the render the image most likely came from
    badness = artefact_badness(dist, clean_guess, clean_guess, cast)
    visual_quality = float(np.interp(badness, _VQ_KNOTS, (4.0, 3.0, 2.0, 1.0)))
    return {"progress": progress, "spill": spill, "artefact": badness, "cast": float(np.linalg.norm(cast)),
            "instruction_following": instruction_following, "visual_quality": visual_quality}


def oracle_scores(task: Task, image: Image.Image | np.ndarray) -> dict[str, float]:
    """Instruction-following and visual-quality scores in [1, 4] for any image of ``task``."""
    d = oracle_details(task, image)
    return {"instruction_following": d["instruction_following"], "visual_quality": d["visual_quality"]}


def _size(image: Image.Image | np.ndarray) -> int | None:
    h = image.size[1] if isinstance(image, Image.Image) else np.asarray(image).shape[0]
    return int(h) if h else None


# compare-exchange network whose element 4 ends up the median of 9 (Paeth's 19-exchange network)
_MEDIAN9 = ((1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8), (0, 3), (5, 8), (4, 7),
            (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2))


def _median3(img: np.ndarray) -> np.ndarray:
    """3x3 median filter per channel (edges padded): removes pixel noise without bleeding edges."""
    h, w = img.shape[:2]
    pad = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    p = [pad[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)]
    for a, b in _MEDIAN9:
        p[a], p[b] = np.minimum(p[a], p[b]), np.maximum(p[a], p[b])
    return p[4]


@lru_cache(maxsize=2048)
def _references(task: Task, size: int, smoothing: str) -> tuple[np.ndarray, np.ndarray]:
    """Source and target smoothed like the image they are compared with (cached: a group shares them)."""
    smooth = _median3 if smoothing == "median" else (lambda a: box_blur(a, 2))
    refs = smooth(task.source_array(size).astype(np.float32)), smooth(task.target_array(size).astype(np.float32))
    for r in refs:
        r.setflags(write=False)
    return refs


def _progress(s_img: np.ndarray, s_src: np.ndarray, s_tgt: np.ndarray, region: np.ndarray) -> float:
    """1 - (distance of the image from the target over the edited region) / (size of the edit)."""
    if not region.any():
        return 1.0
    want = (s_tgt - s_src)[region]
    miss = np.linalg.norm((s_img - s_src)[region] - want, axis=-1).mean()
    return float(1.0 - miss / (np.linalg.norm(want, axis=-1).mean() + 1e-6))


def _edges(img: np.ndarray) -> np.ndarray:
    """Pixels whose colour differs from a 4-neighbour (shape outlines of an exact render)."""
    e = np.zeros(img.shape[:2], bool)
    d_y = (img[1:] != img[:-1]).any(-1)
    d_x = (img[:, 1:] != img[:, :-1]).any(-1)
    e[1:] |= d_y
    e[:-1] |= d_y
    e[:, 1:] |= d_x
    e[:, :-1] |= d_x
    return e


def artefact_badness(dist: np.ndarray, src: np.ndarray, tgt: np.ndarray, cast: np.ndarray) -> float:
    """Artefact energy: per-pixel error ``dist`` on flat areas, or (down-weighted) along the shape edges
    of source and target where blur, blocks and seams live, plus the colour cast."""
    dist = np.minimum(dist, 90)
    near_edge = dilate(_edges(src) | _edges(tgt), 1)
    flat = float(dist[~near_edge].mean()) if (~near_edge).any() else 0.0
    edge = float(dist[near_edge].mean()) if near_edge.any() else 0.0
    return max(flat, _EDGE_WEIGHT * edge) + 0.3 * float(np.linalg.norm(cast))


_PALETTE64 = PALETTE.astype(np.float64)
_PALETTE_SQ = (_PALETTE64 ** 2).sum(-1)


def palette_distance(img: np.ndarray, return_nearest: bool = False):
    """Per-pixel distance to the nearest palette colour (0 everywhere on an exact render)."""
    x = np.clip(img, 0, 255).reshape(-1, 3).astype(np.float64)
    d2 = (x * x).sum(-1)[:, None] - 2.0 * (x @ _PALETTE64.T) + _PALETTE_SQ
    nearest = d2.argmin(-1)
    dist = np.sqrt(np.maximum(np.take_along_axis(d2, nearest[:, None], -1)[:, 0], 0.0)).astype(np.float32)
    dist, nearest = dist.reshape(img.shape[:2]), nearest.reshape(img.shape[:2])
    return (dist, nearest) if return_nearest else dist
