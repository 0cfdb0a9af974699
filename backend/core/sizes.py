"""Image sizes with names: `Size(width, height)` in pixels. A NamedTuple, so `w, h = size` still reads in that
order; NumPy shapes are (height, width[, 3]) and are only ever turned into a `Size` through `size_of`."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Size(NamedTuple):
    """(width, height) in pixels."""

    width: int
    height: int

    @property
    def hw(self) -> tuple[int, int]:
        """(height, width): the order of NumPy shapes and torch sizes."""
        return self.height, self.width


def size_of(image: np.ndarray) -> Size:
    """The `Size` of an (H, W[, C]) array."""
    return Size(int(image.shape[1]), int(image.shape[0]))
