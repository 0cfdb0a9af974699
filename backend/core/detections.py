"""`Detections`: the one type every model adapter and pipeline returns.

Boxes are absolute pixel coordinates ``xyxy`` (x_min, y_min, x_max, y_max) in the
EXIF-corrected image as the annotator sees it, float32, shape (N, 4); x grows to the
right, y grows down, and (0, 0) is the top-left corner of the top-left pixel.
Label Studio percent coordinates appear only in `backend.labelstudio.results`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.core.sizes import Size


@dataclass(frozen=True)
class Detections:
    """Regions found in one image.

    Attributes:
        xyxy: float32 (N, 4) pixel boxes.
        scores: float32 (N,) confidences in [0, 1].
        labels: N Label Studio label values (exact strings from the label config).
        masks: optional bool (N, h, w) instance masks of the whole image, at its size (h, w = height, width)
            or at a smaller working size of the same image (converters scale each mask to `image_size`).
        image_size: `Size` (width, height) of the image in pixels: the frame of `xyxy`.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    labels: tuple[str, ...]
    image_size: Size
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "image_size", Size(*self.image_size))
        n = len(xyxy)
        if len(scores) != n or len(self.labels) != n:
            raise ValueError(f"Detections: {n} boxes, {len(scores)} scores, {len(self.labels)} labels")
        if self.masks is not None:
            masks = np.asarray(self.masks, dtype=bool)
            w, h = self.image_size
            if masks.ndim != 3 or masks.shape[0] != n or masks.shape[1] > max(h, 1) or masks.shape[2] > max(w, 1):
                raise ValueError(f"Detections: masks shape {masks.shape}, expected ({n}, <={h}, <={w})")
            object.__setattr__(self, "masks", masks)

    @classmethod
    def empty(cls, image_size: Size, with_masks: bool = False) -> "Detections":
        w, h = image_size
        masks = np.zeros((0, h, w), dtype=bool) if with_masks else None
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), (), image_size, masks)

    def __len__(self) -> int:
        return len(self.xyxy)

    def select(self, index) -> "Detections":
        """Subset by boolean mask or integer indices (order follows `index`)."""
        idx = np.arange(len(self))[index]
        masks = None if self.masks is None else self.masks[idx]
        return Detections(self.xyxy[idx], self.scores[idx], tuple(self.labels[i] for i in idx),
                          self.image_size, masks)

    @classmethod
    def concat(cls, parts: list["Detections"]) -> "Detections":
        """Regions of several `Detections` of the same image in one; masks kept only if every part has them."""
        size = parts[0].image_size
        masks = None
        if all(p.masks is not None for p in parts):
            masks = np.concatenate([p.masks for p in parts])
        return cls(np.concatenate([p.xyxy for p in parts]), np.concatenate([p.scores for p in parts]),
                   tuple(label for p in parts for label in p.labels), size, masks)

    def resized_to(self, image_size: Size) -> "Detections":
        """The same regions in the frame of the same image at another size (width, height): boxes scaled,
        masks kept at their resolution (see `masks`)."""
        if tuple(image_size) == self.image_size:
            return self
        (w, h), (new_w, new_h) = self.image_size, image_size
        scale = np.array([new_w / w, new_h / h, new_w / w, new_h / h], np.float32)
        return Detections(self.xyxy * scale, self.scores, self.labels, tuple(image_size), self.masks)

    def clipped(self) -> "Detections":
        """Boxes clipped to the image; boxes with no area left are dropped."""
        w, h = self.image_size
        xyxy = self.xyxy.copy()
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
        keep = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        out = Detections(xyxy, self.scores, self.labels, self.image_size, self.masks)
        return out.select(keep)


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """bool (H, W) mask → float32 (4,) xyxy pixel box around its pixels (exclusive right/bottom edges), or None
    for an empty mask."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between float (N, 4) and (M, 4) xyxy boxes → (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod((rb - lt).clip(min=0), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def class_aware_nms(dets: Detections, iou_threshold: float, max_regions: int) -> Detections:
    """Greedy NMS per label; keeps at most `max_regions` boxes, highest score first."""
    order = np.argsort(-dets.scores, kind="stable")
    keep: list[int] = []
    labels = np.array(dets.labels, dtype=object)
    iou = box_iou(dets.xyxy, dets.xyxy)
    suppressed = np.zeros(len(dets), bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        if len(keep) >= max_regions:
            break
        suppressed |= (iou[i] > iou_threshold) & (labels == labels[i])
    return dets.select(np.array(keep, dtype=int))
