"""Training step for a detector whose backbone starts with frozen blocks (`EfficientNetFPN.cacheable`): each image's
frozen-prefix outputs are computed once per training scale and kept (float16, up to a memory bound), so later epochs
run only the trainable blocks after it (the coarse, cheap ones), the FPN, the RPN and the box head. Augmentation moves to the cached maps: a dihedral view (`backend.models.tta`) flips / transposes the
maps and the boxes together (the frozen early layers are not exactly flip-equivariant, so a view of the maps stands in
for the maps of the viewed image: an augmentation, not an identity). Colour jitter needs the pixels and is not
applied on this path.

Images are uint8 (H, W, 3); boxes float32 (N, 4) xyxy pixels; labels int64 (N,) in 1..C.
"""

from __future__ import annotations

import math
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import _resize_image_and_masks

from backend.models.tta import view_boxes

SIZE_DIVISIBLE = 32  # as torchvision's batching: every FPN level then has whole cells
LAST = "_last"  # the frozen prefix's last output, beside its taps


class TapCache:
    """(item index, shorter side) → (the frozen prefix's taps by level and its last output under `LAST`, float16
    (C, h, w) each; (sx, sy) pixel scale of the resized image; (H, W) padded size of the resized image); stops adding once `limit_bytes` are held (later items are recomputed)."""

    def __init__(self, limit_bytes: int):
        self.limit_bytes = limit_bytes
        self.bytes = 0
        self.items: dict[tuple[int, int], tuple] = {}
        self.misses = 0

    def get(self, key: tuple[int, int], compute):
        if key in self.items:
            return self.items[key]
        self.misses += 1
        value = compute()
        size = sum(t.numel() * t.element_size() for t in value[0].values())
        if self.bytes + size <= self.limit_bytes:
            self.items[key] = value
            self.bytes += size
        return value


@torch.no_grad()
def backbone_taps(model: FasterRCNN, image: np.ndarray, size: int, device: str) -> tuple:
    """The frozen prefix's outputs for `image` resized to shorter side `size` (torchvision's resize rule, `max_size`
    cap) and zero-padded to multiples of 32 → (maps, (sx, sy), (H, W)) as `TapCache` holds them."""
    height, width = image.shape[:2]
    tensor = torch.from_numpy(image).to(device).permute(2, 0, 1).float().div(255)
    tensor, _ = _resize_image_and_masks(model.transform.normalize(tensor), size, model.transform.max_size)
    h, w = tensor.shape[-2:]
    padded_h, padded_w = (int(math.ceil(v / SIZE_DIVISIBLE) * SIZE_DIVISIBLE) for v in (h, w))
    tensor = F.pad(tensor, (0, padded_w - w, 0, padded_h - h))
    taps, last = model.backbone.prefix(tensor[None])
    maps = {**{name: t[0].half() for name, t in taps.items()}, LAST: last[0].half()}
    return maps, (w / width, h / height), (padded_h, padded_w)


def view_map(x: torch.Tensor, k: int) -> torch.Tensor:
    """The dihedral view `k` of a (C, H, W) map, in the order `backend.models.tta.view` applies to images."""
    if k & 1:
        x = x.flip(-1)
    if k & 2:
        x = x.flip(-2)
    if k & 4:
        x = x.transpose(-1, -2)
    return x


def _batch(maps: list[torch.Tensor]) -> torch.Tensor:
    """(C, h_i, w_i) maps → (N, C, max h, max w), zero-padded at the bottom and right."""
    height, width = max(m.shape[-2] for m in maps), max(m.shape[-1] for m in maps)
    return torch.stack([F.pad(m, (0, width - m.shape[-1], 0, height - m.shape[-2])) for m in maps])


def cached_losses(model: FasterRCNN, items: list, batch: np.ndarray, rng: np.random.Generator, cache: TapCache,
                  dihedral: bool, device: str) -> dict[str, torch.Tensor]:
    """The training losses of one batch (item indices `batch`) from cached taps: a random training scale of
    `model.transform.min_size` per item, a random view (horizontal flip; all 8 with `dihedral`)."""
    sizes = model.transform.min_size
    per_level: dict[str, list[torch.Tensor]] = {}
    image_sizes, targets = [], []
    for i in batch:
        size = int(sizes[rng.integers(len(sizes))])
        taps, (sx, sy), (height, width) = cache.get((int(i), size),
                                                    lambda: backbone_taps(model, items[i][0], size, device))
        k = int(rng.random() < 0.5)
        if dihedral:
            k |= int(rng.random() < 0.5) << 1 | int(rng.random() < 0.5) << 2
        for name, t in taps.items():
            per_level.setdefault(name, []).append(view_map(t, k).float())
        boxes = np.asarray(items[i][1], np.float32).reshape(-1, 4) * np.array([sx, sy, sx, sy], np.float32)
        image_sizes.append((width, height) if k & 4 else (height, width))
        targets.append({"boxes": torch.as_tensor(view_boxes(boxes, k, width, height), device=device),
                        "labels": torch.as_tensor(items[i][2], dtype=torch.int64, device=device)})
    batched = {name: _batch(maps) for name, maps in per_level.items()}
    last = batched.pop(LAST)
    features = model.backbone.fpn(model.backbone.suffix(batched, last))
    first = next(iter(features.values()))
    # the anchor generator reads each level's stride as the batch's image size over the level's size
    height = max(h for h, _ in image_sizes)
    width = max(w for _, w in image_sizes)
    images = ImageList(first.new_zeros(1, 1, 1, 1).expand(len(batch), 3, height, width), image_sizes)
    proposals, rpn_losses = model.rpn(images, features, targets)
    _, box_losses = model.roi_heads(features, proposals, images.image_sizes, targets)
    return {**rpn_losses, **box_losses}
