"""Dihedral views of a detector's backbone maps instead of its image: computed once per image, the frozen prefix's
maps (`EfficientNetFPN.prefix`) are flipped / transposed and the rest of the network (trainable blocks, FPN, RPN, box
head) runs on each view.

Training with a cached frozen prefix (`backend.training.cached_features`) augments this way, so the network learns
the views of the maps, not of the pixels (the frozen early layers are not exactly flip-equivariant). Test-time fusion
for such a detector (`predict_map_views`) therefore views the maps too: the views the network was trained on, for the
price of one backbone pass per image (the heads run once per view). On the DeepForest tiles (`bench/retrain.py`) a
detector of the cached recipe trained 300 s scored held-out AP50 0.449 with 8 map views fused against 0.357 unfused
and 0.377 with 8 views of the image (3× slower); another run 0.470 against 0.403.

A view is a bit set k as in `backend.models.tta`: 1 = horizontal flip, 2 = vertical flip, 4 = transpose.
Images are uint8 (H, W, 3); maps float (C, h, w); boxes float32 (N, 4) xyxy pixels.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import _resize_image_and_masks

from backend.models.tta import fuse, unview_boxes

SIZE_DIVISIBLE = 32  # as torchvision's batching: every FPN level then has whole cells
LAST = "_last"  # the frozen prefix's last output, beside its taps


@torch.no_grad()
def backbone_taps(model: FasterRCNN, image: np.ndarray, size: int, device: str) -> tuple:
    """The frozen prefix's outputs for `image` resized to shorter side `size` (torchvision's resize rule, `max_size`
    cap) and zero-padded to multiples of 32 → (maps: its taps by level name and its last output under `LAST`, float16
    (C, h, w) each; (sx, sy) pixel scale of the resized image; (H, W) padded size of the resized image)."""
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


def batch_maps(maps: list[torch.Tensor]) -> torch.Tensor:
    """(C, h_i, w_i) maps → (N, C, max h, max w), zero-padded at the bottom and right."""
    height, width = max(m.shape[-2] for m in maps), max(m.shape[-1] for m in maps)
    return torch.stack([F.pad(m, (0, width - m.shape[-1], 0, height - m.shape[-2])) for m in maps])


def head_inputs(model: FasterRCNN, per_level: dict[str, list[torch.Tensor]],
                image_sizes: list[tuple[int, int]]) -> tuple[ImageList, dict[str, torch.Tensor]]:
    """The viewed prefix maps of a batch (`per_level`: level name → one (C, h, w) map per item, `LAST` included) →
    (the `ImageList` the RPN reads strides from, the FPN maps): the blocks after the prefix and the FPN, run on them.
    image_sizes: (H, W) of each item's padded view."""
    batched = {name: batch_maps(maps) for name, maps in per_level.items()}
    last = batched.pop(LAST)
    features = model.backbone.fpn(model.backbone.suffix(batched, last))
    first = next(iter(features.values()))
    # the anchor generator reads each level's stride as the batch's image size over the level's size
    height = max(h for h, _ in image_sizes)
    width = max(w for _, w in image_sizes)
    images = ImageList(first.new_zeros(1, 1, 1, 1).expand(len(image_sizes), 3, height, width), image_sizes)
    return images, features


@torch.inference_mode()
def map_view_detections(model: FasterRCNN, image: np.ndarray, views: int, device: str,
                        size: int | None = None) -> list[dict]:
    """One image's detections on each map view 0..`views`-1, mapped back to the image: per view {"boxes": float32
    (N, 4) xyxy pixels of the image, "scores": float32 (N,), "labels": int64 (N,)}, numpy. The model predicts at
    shorter side `size` (default: its inference scale, `model.transform.min_size[-1]`); boxes are clipped to the
    image, and those wholly in the padding dropped."""
    model.eval()
    height, width = image.shape[:2]
    size = size or model.transform.min_size[-1]
    maps, (sx, sy), (padded_h, padded_w) = backbone_taps(model, image, size, device)
    found: dict[int, dict] = {}
    # one batch per orientation: a transposed view batched with an upright one would pad both to a square
    for group in ([k for k in range(views) if not k & 4], [k for k in range(views) if k & 4]):
        if not group:
            continue
        per_level: dict[str, list[torch.Tensor]] = {}
        for k in group:
            for name, t in maps.items():
                per_level.setdefault(name, []).append(view_map(t.float(), k))
        size = (padded_w, padded_h) if group[0] & 4 else (padded_h, padded_w)
        images, features = head_inputs(model, per_level, [size] * len(group))
        proposals, _ = model.rpn(images, features)
        detections, _ = model.roi_heads(features, proposals, images.image_sizes)
        found.update(zip(group, detections))
    scale = np.array([sx, sy, sx, sy], np.float32)
    out = []
    for k in range(views):
        boxes = unview_boxes(found[k]["boxes"].float().cpu().numpy(), k, padded_w, padded_h) / scale
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        inside = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # not wholly in the padding
        out.append({"boxes": boxes[inside], "scores": found[k]["scores"].float().cpu().numpy()[inside],
                    "labels": found[k]["labels"].cpu().numpy()[inside]})
    return out


def predict_map_views(model: FasterRCNN, image: np.ndarray, views: int, device: str,
                      scales: tuple[int, ...] = ()) -> dict:
    """One image's detections fused over map views 0..`views`-1 (`map_view_detections`) at the inference scale and
    at each further shorter side of `scales` (one backbone pass each), then `backend.models.tta.fuse` over all
    views × scales: {"boxes", "scores", "labels"} as there, boxes within the image."""
    per_view = [v for size in (None, *scales) for v in map_view_detections(model, image, views, device, size)]
    return fuse(*(np.concatenate([v[key] for v in per_view]) for key in ("boxes", "scores", "labels")),
                len(per_view), size=(image.shape[1], image.shape[0]))
