"""Pixel masks and filters shared by the simulated editors and the oracle: where an edit acts, grow, blur."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage

from editworld.tasks import Task


@lru_cache(maxsize=1024)
def edit_region(task: Task, size: int) -> np.ndarray:
    """Pixels the correct edit changes (bool mask)."""
    return (task.source_array(size) != task.target_array(size)).any(-1)


_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


def dilate(mask: np.ndarray, k: int) -> np.ndarray:
    """Grow a mask by ``k`` pixels (4-neighbourhood); nothing grows in from outside the image."""
    return ndimage.binary_dilation(mask, _CROSS, iterations=k) if k > 0 else mask.copy()


def box_blur(img: np.ndarray, k: int) -> np.ndarray:
    """Mean over a (2k+1)^2 window per channel, edges padded by repetition."""
    return ndimage.uniform_filter(img.astype(np.float32), size=(2 * k + 1, 2 * k + 1, 1), mode="nearest")
