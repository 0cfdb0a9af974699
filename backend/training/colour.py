"""Colour jitter of training images (`backend.training.detector.augment`, and the cached colour variants of
`backend.training.cached_features`).

Images are float (3, H, W) tensors in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch


def jitter_colour(image: torch.Tensor, rng: np.random.Generator, strength: float) -> torch.Tensor:
    """Random brightness, contrast and saturation factors in [1 - strength, 1 + strength], in random order.
    image: float (3, H, W) in [0, 1] → same shape, clamped to [0, 1]."""
    if strength <= 0:
        return image
    factors = rng.uniform(1 - strength, 1 + strength, size=3)
    for op in rng.permutation(3):
        if op == 0:
            image = image * factors[0]
        else:
            grey = (image * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
            anchor = grey.mean() if op == 1 else grey
            image = anchor + (image - anchor) * factors[op]
        image = image.clamp(0, 1)
    return image
