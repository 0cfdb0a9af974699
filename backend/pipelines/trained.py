"""`trained`: a project's own detector, retrained from its reviewed annotations, with the zero-shot
pipeline as the fallback for labels the detector was never trained on.

Masks for Brush/Polygon controls come from SAM on the detector's boxes; without SAM a region's mask is its
box (a rectangle the annotator reshapes) and a warning is logged.
"""

from __future__ import annotations

import logging

import numpy as np

from backend.adapters.base import LazyModel
from backend.adapters.sam import SamSegmenter
from backend.adapters.trained_detector import TrainedDetector
from backend.core.detections import Detections, class_aware_nms
from backend.core.ontology import Ontology
from backend.core.params import PredictParams
from backend.pipelines.grounded import add_sam_masks

log = logging.getLogger(__name__)
REGION_TAGS = ("RectangleLabels", "BrushLabels", "PolygonLabels", "KeyPointLabels")


def unknown_labels(ontology: Ontology, classes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Region labels of the config that the detector has no class for (config order)."""
    region_labels = dict.fromkeys(l for c in ontology.controls if c.tag in REGION_TAGS for l in c.labels)
    return tuple(label for label in region_labels if label not in classes)


def box_masks(dets: Detections) -> Detections:
    """The same detections with each box filled as its mask."""
    w, h = dets.image_size
    masks = np.zeros((len(dets), h, w), bool)
    for mask, (x1, y1, x2, y2) in zip(masks, np.round(dets.xyxy).astype(int)):
        mask[y1:y2, x1:x2] = True
    return Detections(dets.xyxy, dets.scores, dets.labels, dets.image_size, masks)


class TrainedDetectorPipeline:
    """Built per request by the runtime (cheap): the detector model itself is a cached `LazyModel`.

    fallback: the zero-shot pipeline for `fallback_labels` (None when there are none or none can run).
    """

    name = "trained"

    def __init__(self, detector: LazyModel[TrainedDetector], version_label: str, sam: LazyModel[SamSegmenter],
                 fallback=None, fallback_labels: tuple[str, ...] = ()):
        self.detector = detector
        self.version_label = version_label
        self.sam = sam
        self.fallback = fallback if fallback_labels else None
        self.fallback_labels = fallback_labels

    @property
    def model_version(self) -> str:
        return f"{self.version_label}+{self.fallback.model_version}" if self.fallback else self.version_label

    def required_models(self) -> list[LazyModel]:
        return [self.detector]

    def predict(self, images: list[np.ndarray], ontology: Ontology, params: PredictParams) -> list[Detections]:
        """uint8 (H, W, 3) images → one `Detections` per image: the detector's regions for the labels it
        knows (and the config still has), the fallback's for the others; class-aware NMS and `max_regions`."""
        found = self.detector.get().detect(images, params.box_threshold)
        wanted = set(ontology.labels)
        dets = [d.select([i for i, label in enumerate(d.labels) if label in wanted]) for d in found]
        if ontology.wants_masks:
            dets = self._masks(images, dets)
        if self.fallback is not None:
            extra = self.fallback.predict(images, ontology.restricted_to(self.fallback_labels), params)
            if ontology.wants_masks:  # the fallback's config subset may have no mask control
                extra = [box_masks(e) if e.masks is None else e for e in extra]
            dets = [Detections.concat([d, e]) for d, e in zip(dets, extra)]
        return [class_aware_nms(d.clipped(), params.nms_iou, params.max_regions) for d in dets]

    def _masks(self, images: list[np.ndarray], dets: list[Detections]) -> list[Detections]:
        """SAM masks for the boxes; each box as its own mask when SAM is unavailable (or nothing was found)."""
        sam = self.sam.try_get() if any(len(d) for d in dets) else None
        if sam is not None:
            return add_sam_masks(sam, images, dets)
        if any(len(d) for d in dets):
            log.warning("masks from boxes: SAM is unavailable (%s)", self.sam.status().get("error"))
        return [box_masks(d) for d in dets]
