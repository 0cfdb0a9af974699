"""`trained`: a project's own detector, retrained from its reviewed annotations, with the zero-shot pipeline for
labels the detector was never trained on and for labels on which the zero-shot pipeline did better on the held-out
tasks (the version's per-label sources, `backend.training.sources`).

Masks for Brush/Polygon controls come from SAM on the detector's boxes; without SAM a region's mask is its
box (a rectangle the annotator reshapes) and a warning is logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.adapters.base import LazyModel
from backend.adapters.sam import SamSegmenter
from backend.adapters.trained_detector import TrainedDetector
from backend.core.detections import Detections, class_aware_nms
from backend.core.ontology import REGION_CONTROLS, VIDEO_CONTROLS, Ontology
from backend.core.params import PredictParams
from backend.core.region_memory import RegionMemory
from backend.pipelines.base import Steps
from backend.pipelines.coverage import Coverage
from backend.pipelines.masks import box_masks, with_masks
from backend.pipelines.remembered import RememberedPipeline

REGION_TAGS = tuple(t for t in REGION_CONTROLS if t not in VIDEO_CONTROLS)  # image region controls


def unknown_labels(ontology: Ontology, classes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Region labels of the config that the detector has no class for (config order)."""
    region_labels = dict.fromkeys(l for c in ontology.controls if c.tag in REGION_TAGS for l in c.labels)
    return tuple(label for label in region_labels if label not in classes)


@dataclass
class _TrainedWork:
    """fallback: the fallback pipeline's prepared work (None without one); detections / fallback_raw: filled
    by `forward`."""

    images: list[np.ndarray]
    ontology: Ontology
    params: PredictParams
    fallback: Any = None
    detections: list[Detections] | None = None
    fallback_raw: Any = None


class TrainedDetectorPipeline(Steps):
    """Built per request by the pipeline selector (cheap): the detector model itself is a cached `LazyModel`.

    fallback: the zero-shot pipeline for `fallback_labels` (None when there are none or none can run): labels the
    detector does not know and `zero_shot_labels`, which it knows but the zero-shot pipeline serves better; asked
    through a `RememberedPipeline` over `memory` (the process's zero-shot regions: its answers to the project's
    whole config are reused).
    """

    name = "trained"

    def __init__(self, detector: LazyModel[TrainedDetector], version: str, sam: LazyModel[SamSegmenter],
                 fallback=None, fallback_labels: tuple[str, ...] = (), classes: tuple[str, ...] | None = None,
                 zero_shot_labels: tuple[str, ...] = (), evidence: dict[str, str] | None = None,
                 thresholds: dict[str, float] | None = None, memory: RegionMemory | None = None):
        self.detector = detector
        self.version = version
        self.sam = sam
        # asked for `fallback_labels` only; regions the project's pre-labels found are reused from `memory`
        memory = memory if memory is not None else RegionMemory(0)
        self.fallback = RememberedPipeline(fallback, memory, fallback_labels) \
            if fallback is not None and fallback_labels else None
        self.fallback_labels = fallback_labels
        self.classes = classes  # the labels the detector was trained on (None: not known)
        # known labels left to the zero-shot pipeline; the detector's own regions of them are dropped only when that
        # pipeline can run (else the detector still serves them)
        self.zero_shot_labels = zero_shot_labels if self.fallback is not None else ()
        self.evidence = evidence or {}  # label → the held-out comparison its source was chosen by
        # label → the score cut its regions are shown from (fitted to the annotators' time; else `box_threshold`)
        self.thresholds = thresholds or {}

    @property
    def model_version(self) -> str:
        return f"{self.version}+{self.fallback.model_version}" if self.fallback else self.version

    def required_models(self) -> list[LazyModel]:
        return [self.detector]

    def coverage(self, ontology: Ontology, params: PredictParams) -> Coverage:
        """The detector's labels (video ones too); the fallback's coverage for the image region labels it does not
        know; other labels (Choices) are not pre-labelled while a detector serves the project."""
        predicted, missing = {}, {}
        fallback = self.fallback.coverage(ontology.restricted_to(self.fallback_labels), params) \
            if self.fallback is not None else None
        region_labels = {l for c in ontology.controls if c.tag in REGION_CONTROLS for l in c.labels}
        for label in ontology.labels:
            if label not in region_labels:
                missing[label] = "the project's trained detector fills region controls only"
            elif label not in self.fallback_labels and self.thresholds.get(label, 0.0) > 1.0:
                missing[label] = f"the project's detector {self.version} is not shown for it: on the held-out tasks "\
                                 "correcting its boxes took longer than drawing them; the next versions may do better"
            elif label not in self.fallback_labels and (self.classes is None or label in self.classes):
                why = f" ({self.evidence[label]})" if label in self.evidence else ""
                predicted[label] = f"the project's detector {self.version}{why}"
            elif label not in self.fallback_labels:
                missing[label] = f"the project's detector {self.version} was not trained on it yet"
            elif fallback is not None and label in fallback.predicted:
                why = f"chosen over the detector: {self.evidence.get(label, 'no held-out comparison yet')}" \
                    if label in self.zero_shot_labels else "the detector was not trained on it"
                predicted[label] = f"{fallback.predicted[label]} ({self.fallback.model_version}: {why})"
            elif fallback is not None:
                missing[label] = fallback.missing.get(label, "not pre-labelled")
            else:
                missing[label] = f"the project's detector {self.version} was not trained on it and no zero-shot "\
                                 "pipeline can run"
        return Coverage(self.model_version, predicted, missing)

    def prepare(self, images: list[np.ndarray], ontology: Ontology, params: PredictParams) -> _TrainedWork:
        work = _TrainedWork(images, ontology, params)
        if self.fallback is not None:  # the whole config: `RememberedPipeline` answers for the fallback labels
            work.fallback = self.fallback.prepare(images, ontology, params)
        return work

    def forward(self, work: _TrainedWork) -> _TrainedWork:
        """The detector's regions for the labels it knows (and the config still has), masks when wanted, and
        the fallback's model calls."""
        lowest = min([work.params.box_threshold, *self.thresholds.values()])
        found = self.detector.get().detect(work.images, lowest)
        wanted = set(work.ontology.labels) - set(self.zero_shot_labels)
        cut = lambda label: self.thresholds.get(label, work.params.box_threshold)  # noqa: E731
        dets = [d.select([i for i, label in enumerate(d.labels) if label in wanted and d.scores[i] >= cut(label)])
                for d in found]
        work.detections = with_masks(self.sam, work.images, dets) if work.ontology.wants_masks else dets
        if self.fallback is not None:
            work.fallback_raw = self.fallback.forward(work.fallback)
        return work

    def finish(self, work: _TrainedWork) -> list[Detections]:
        """Detector and fallback regions together; class-aware NMS and `max_regions`."""
        dets = work.detections
        if self.fallback is not None:
            extra = self.fallback.finish(work.fallback_raw)
            if work.ontology.wants_masks:  # the fallback's config subset may have no mask control
                extra = [box_masks(e) if e.masks is None else e for e in extra]
            dets = [Detections.concat([d, e]) for d, e in zip(dets, extra)]
        return [class_aware_nms(d.clipped(), work.params.nms_iou, work.params.max_regions) for d in dets]
