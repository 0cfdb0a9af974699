"""(Provisional: replaced by the review-score work.) Review-priority score of one image's prediction."""

from __future__ import annotations

import numpy as np

from backend.core.detections import Detections, box_iou


def mirror_image(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[:, ::-1])


def unmirror(dets: Detections, width: int) -> Detections:
    xyxy = dets.xyxy.copy()
    xyxy[:, [0, 2]] = width - dets.xyxy[:, [2, 0]]
    masks = None if dets.masks is None else dets.masks[:, :, ::-1]
    return Detections(xyxy, dets.scores, dets.labels, dets.image_size, masks)


def confidence_score(dets: Detections) -> float:
    return float(dets.scores.mean()) if len(dets) else 1.0


def review_score(dets: Detections, mirrored: Detections) -> float:
    if not len(dets) and not len(mirrored):
        return 1.0
    iou = box_iou(dets.xyxy, mirrored.xyxy)
    same = np.array(dets.labels, object)[:, None] == np.array(mirrored.labels, object)[None, :]
    matched = (iou * same).max(axis=1) if iou.size else np.zeros(len(dets))
    return float((dets.scores * matched).sum() / max(dets.scores.sum() + len(mirrored) - (matched > 0).sum(), 1e-9))
