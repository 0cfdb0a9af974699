"""Training step for a detector whose backbone starts with frozen blocks (`EfficientNetFPN.cacheable`): each image's
frozen-prefix outputs are computed once per training scale and kept (float16, up to a memory bound), so later epochs
run only the trainable blocks after it (the coarse, cheap ones), the FPN, the RPN and the box head. Augmentation moves
to the cached maps: a dihedral view flips / transposes the maps and the boxes together (`backend.models.map_views`;
the frozen early layers are not exactly flip-equivariant, so a view of the maps stands in for the maps of the viewed
image: an augmentation, not an identity, and the views test-time fusion then uses). Colour jitter and scale need the
pixels, so they come as cached variants: besides the image at each training scale, `variants` - 1 copies of it, each
colour-jittered and resized to a scale of its own between the training scales (`jittered_copy`, fixed per item and
variant), and each step draws one of them per image. How many pay is `backend.training.recipe.cached_variants`.

Images are uint8 (H, W, 3); boxes float32 (N, 4) xyxy pixels; labels int64 (N,) in 1..C.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.models.detection import FasterRCNN

from backend.models.map_views import backbone_taps, head_inputs, view_map
from backend.models.tta import view_boxes
from backend.training.colour import jitter_colour


class TapCache:
    """(item index, shorter side, variant) → (the frozen prefix's taps by level and its last output under `LAST`,
    float16 (C, h, w) each; (sx, sy) pixel scale of the resized image; (H, W) padded size of the resized image); stops
    adding once `limit_bytes` are held (later items are recomputed; `full` is then True)."""

    def __init__(self, limit_bytes: int):
        self.limit_bytes = limit_bytes
        self.bytes = 0
        self.items: dict[tuple[int, int, int], tuple] = {}
        self.misses = 0
        self.full = False

    def get(self, key: tuple[int, int, int], compute):
        if key in self.items:
            return self.items[key]
        self.misses += 1
        value = compute()
        size = sum(t.numel() * t.element_size() for t in value[0].values())
        if self.bytes + size <= self.limit_bytes:
            self.items[key] = value
            self.bytes += size
        else:
            self.full = True
        return value


def jittered_copy(image: np.ndarray, item: int, variant: int, strength: float) -> np.ndarray:
    """Variant `variant` of item `item`'s image: itself for 0, else a colour-jittered copy (`jitter_colour` with a
    generator seeded by (item, variant), so a variant is the same image whenever its taps are recomputed).
    uint8 (H, W, 3) → uint8 (H, W, 3)."""
    if variant == 0 or strength <= 0:
        return image
    tensor = torch.from_numpy(image).permute(2, 0, 1).float().div(255)
    tensor = jitter_colour(tensor, np.random.default_rng((item, variant)), strength)
    return tensor.mul(255).round().byte().permute(1, 2, 0).numpy()


def cached_losses(model: FasterRCNN, items: list, batch: np.ndarray, rng: np.random.Generator, cache: TapCache,
                  dihedral: bool, device: str, variants: int = 1,
                  colour_jitter: float = 0.0) -> dict[str, torch.Tensor]:
    """The training losses of one batch (item indices `batch`) from cached taps: per item a random one of `variants`
    (0: the image at a random training scale of `model.transform.min_size`; 1.. `variants` - 1: its colour-jittered
    copies of strength `colour_jitter` at their own scales, `jittered_copy`; once the cache is full, only those it
    holds), then a random view (horizontal flip; all 8 with `dihedral`)."""
    sizes = model.transform.min_size
    per_level: dict[str, list[torch.Tensor]] = {}
    image_sizes, targets = [], []
    for i in batch:
        variant = int(rng.integers(variants)) if variants > 1 else 0
        if variant:  # a scale of its own between the training scales, fixed per (item, variant)
            size = int(np.random.default_rng((int(i), variant, 1)).integers(min(sizes), max(sizes) + 1))
            if cache.full and (int(i), size, variant) not in cache.items:
                variant = 0  # the cache holds no more: the image itself, as without variants
        if not variant:
            size = int(sizes[rng.integers(len(sizes))])
        taps, (sx, sy), (height, width) = cache.get(
            (int(i), size, variant),
            lambda: backbone_taps(model, jittered_copy(items[i][0], int(i), variant, colour_jitter), size, device))
        k = int(rng.random() < 0.5)
        if dihedral:
            k |= int(rng.random() < 0.5) << 1 | int(rng.random() < 0.5) << 2
        for name, t in taps.items():
            per_level.setdefault(name, []).append(view_map(t, k).float())
        boxes = np.asarray(items[i][1], np.float32).reshape(-1, 4) * np.array([sx, sy, sx, sy], np.float32)
        image_sizes.append((width, height) if k & 4 else (height, width))
        targets.append({"boxes": torch.as_tensor(view_boxes(boxes, k, width, height), device=device),
                        "labels": torch.as_tensor(items[i][2], dtype=torch.int64, device=device)})
    images, features = head_inputs(model, per_level, image_sizes)
    proposals, rpn_losses = model.rpn(images, features, targets)
    _, box_losses = model.roi_heads(features, proposals, images.image_sizes, targets)
    return {**rpn_losses, **box_losses}
