"""Test-time augmentation for top-down imagery: run a detector on dihedral views of each image (flips,
transpose), map the boxes back to the original image and fuse them by weighted box fusion.

A view is a bit set k: 1 = horizontal flip, 2 = vertical flip, 4 = transpose (applied in that order).
Images are uint8 (H, W, 3); boxes float32 (N, 4) xyxy pixels; scores float32 (N,); labels int64 (N,).
"""

from __future__ import annotations

import numpy as np

from backend.core.detections import box_iou

VIEW_COUNTS = (1, 2, 4, 8)  # identity; + horizontal flip; + both flips; + their transposes


def view(image: np.ndarray, k: int) -> np.ndarray:
    """The view `k` of an (H, W, 3) image, contiguous; (W, H, 3) when k transposes."""
    if k & 1:
        image = image[:, ::-1]
    if k & 2:
        image = image[::-1]
    if k & 4:
        image = image.transpose(1, 0, 2)
    return np.ascontiguousarray(image)


def view_boxes(boxes: np.ndarray, k: int, width: int, height: int) -> np.ndarray:
    """Boxes of a `width` x `height` image → the same boxes in its view `k`."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    if k & 1:
        boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    if k & 2:
        boxes[:, [1, 3]] = height - boxes[:, [3, 1]]
    if k & 4:
        boxes = boxes[:, [1, 0, 3, 2]]
    return boxes


def unview_boxes(boxes: np.ndarray, k: int, width: int, height: int) -> np.ndarray:
    """Boxes found in view `k` of a `width` x `height` image → boxes in the original image."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    if k & 4:
        boxes = boxes[:, [1, 0, 3, 2]]
    if k & 2:
        boxes[:, [1, 3]] = height - boxes[:, [3, 1]]
    if k & 1:
        boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    return boxes


def fuse(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, n_views: int,
         iou: float = 0.55, size: tuple[int, int] | None = None) -> dict:
    """Weighted box fusion of the detections of `n_views` views of one image.

    Per label, detections are taken by descending score; each joins the cluster of the first kept box it
    overlaps by IoU >= `iou`, else starts one (a box without area overlaps nothing: a cluster of its own). A
    cluster's box is the score-weighted mean of its members; its score the sum of its `n_views` best scores /
    `n_views`, so a box seen in one view only is damped. With the image's `size` (width, height) fused boxes are
    clipped to it (a float32 weighted mean of edges on the border can land a hair outside).
    Returns {"boxes", "scores", "labels"} sorted by descending score.
    """
    out_boxes, out_scores, out_labels = [], [], []
    for label in np.unique(labels):
        mask = labels == label
        order = np.argsort(-scores[mask], kind="stable")
        b, s = boxes[mask][order], scores[mask][order]
        assigned = np.full(len(b), -1)
        clusters = []
        for i in range(len(b)):
            if assigned[i] >= 0:
                continue
            free = np.flatnonzero(assigned < 0)  # one row of overlaps per cluster, not the (N, N) matrix
            members = free[(box_iou(b[i:i + 1], b[free])[0] >= iou) | (free == i)]
            assigned[members] = len(clusters)
            clusters.append(members)
        for members in clusters:
            weights = s[members]
            out_boxes.append((b[members] * weights[:, None]).sum(0) / weights.sum())
            out_scores.append(np.sort(weights)[::-1][:n_views].sum() / n_views)
            out_labels.append(label)
    order = np.argsort(-np.array(out_scores, np.float32), kind="stable")
    fused = np.array(out_boxes, np.float32).reshape(-1, 4)
    if size is not None:
        fused = fused.clip(0, np.array([*size, *size], np.float32))
    return {"boxes": fused[order],
            "scores": np.array(out_scores, np.float32)[order],
            "labels": np.array(out_labels, np.int64)[order]}


def soft_nms(found: dict, sigma: float) -> dict:
    """Gaussian soft non-maximum suppression of one image's detections ({"boxes", "scores", "labels"} as `fuse`
    returns them): per label, boxes are taken by descending (decayed) score and every box not yet taken has its score
    multiplied by exp(-IoU² / `sigma`) with the box just taken (Bodla et al., ICCV 2017). A duplicate that fusion left
    beside a box (IoU 0.3-0.55, under `fuse`'s cluster threshold) sinks under the served cut instead of costing a
    deletion; a neighbour that barely overlaps keeps most of its score. `sigma` <= 0 returns `found` unchanged.
    Returns the same keys, sorted by descending new score (boxes and labels unchanged)."""
    if sigma <= 0 or not len(found["scores"]):
        return found
    boxes, labels = found["boxes"], found["labels"]
    scores = found["scores"].astype(np.float64).copy()
    overlaps = box_iou(boxes, boxes)
    open_ = np.ones(len(scores), bool)
    while open_.any():
        i = int(np.flatnonzero(open_)[np.argmax(scores[open_])])
        open_[i] = False
        decay = open_ & (labels == labels[i])
        scores[decay] *= np.exp(-overlaps[i, decay] ** 2 / sigma)
    order = np.argsort(-scores, kind="stable")
    return {"boxes": boxes[order], "scores": scores[order].astype(np.float32), "labels": labels[order]}
