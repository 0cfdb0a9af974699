"""Masks for detected boxes: SAM's when it loads, else each box filled (a rectangle the annotator reshapes)."""

from __future__ import annotations

import logging

import numpy as np

from backend.adapters.base import LazyModel
from backend.adapters.sam import SamSegmenter
from backend.core.detections import Detections

log = logging.getLogger(__name__)


def add_sam_masks(sam: SamSegmenter, images: list[np.ndarray], dets: list[Detections]) -> list[Detections]:
    """The same detections with bool (N, H, W) SAM masks from their boxes (images without regions are not
    encoded; they get an empty mask array)."""
    out = list(dets)
    todo = [i for i, d in enumerate(dets) if len(d)]
    for i, embedding in zip(todo, sam.embed([images[i] for i in todo])):
        masks, _ = sam.masks_from_boxes(embedding, dets[i].xyxy)
        out[i] = Detections(dets[i].xyxy, dets[i].scores, dets[i].labels, dets[i].image_size, masks)
    for i in set(range(len(dets))) - set(todo):
        out[i] = Detections.empty(dets[i].image_size, with_masks=True)
    return out


def box_masks(dets: Detections) -> Detections:
    """The same detections with each box filled as its mask."""
    w, h = dets.image_size
    masks = np.zeros((len(dets), h, w), bool)
    for mask, (x1, y1, x2, y2) in zip(masks, np.round(dets.xyxy).astype(int)):
        mask[y1:y2, x1:x2] = True
    return Detections(dets.xyxy, dets.scores, dets.labels, dets.image_size, masks)


def with_masks(sam: LazyModel[SamSegmenter], images: list[np.ndarray], dets: list[Detections]) -> list[Detections]:
    """SAM masks for the boxes; each box as its own mask when SAM is unavailable (or nothing was found)."""
    found = any(len(d) for d in dets)
    segmenter = sam.try_get() if found else None
    if segmenter is not None:
        return add_sam_masks(segmenter, images, dets)
    if found:
        log.warning("masks from boxes: SAM is unavailable (%s)", sam.status().get("error"))
    return [box_masks(d) for d in dets]
