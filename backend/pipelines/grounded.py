"""`PIPELINE=grounded`: label prompts → Grounding DINO boxes → (SAM masks when the config asks for masks).

All images of a request go through each model in batches. Every box is labelled with the exact label
value whose prompt matched; class-aware NMS and `max_regions` apply per image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from backend.adapters.base import LazyModel
from backend.adapters.classifier import ImageClassifier
from backend.adapters.grounding_dino import GroundingDinoDetector
from backend.adapters.hub import short_name
from backend.adapters.sam import SamSegmenter
from backend.core.detections import Detections, class_aware_nms
from backend.core.errors import BadRequest
from backend.core.ontology import Ontology
from backend.core.params import PredictParams
from backend.core.sizes import size_of
from backend.pipelines.base import Steps
from backend.pipelines.cascade import classify_regions
from backend.pipelines.coverage import Coverage, mapped_by_classes
from backend.pipelines.label_mapping import class_groups
from backend.pipelines.masks import add_sam_masks

log = logging.getLogger(__name__)


def prompts_for(ontology: Ontology) -> tuple[list[str], list[str]]:
    """(prompts, owning label of each prompt) for every label of the ontology, in label order."""
    prompts, owners = [], []
    for label in ontology.labels:
        for prompt in ontology.prompts.get(label, (label,)):
            prompts.append(prompt)
            owners.append(label)
    return prompts, owners


@dataclass
class _GroundedWork:
    """prompts: text prompts sent to the detector; owners: the label value each prompt stands for."""

    images: list[np.ndarray]
    prompts: list[str]
    owners: list[str]
    ontology: Ontology
    params: PredictParams


class GroundedPipeline(Steps):
    name = "grounded"

    def __init__(self, detector: LazyModel[GroundingDinoDetector], sam: LazyModel[SamSegmenter],
                 classifier: LazyModel[ImageClassifier] | None = None):
        self.detector = detector
        self.sam = sam
        self.classifier = classifier  # names the boxes of a generic `cascade_prompt`

    @property
    def model_version(self) -> str:
        return f"grounded-{short_name(self.detector.source)}+{short_name(self.sam.source)}"

    def required_models(self) -> list[LazyModel]:
        return [self.detector]

    def coverage(self, ontology: Ontology, params: PredictParams) -> Coverage:
        """Every label through its prompts (open-set); with `cascade_prompt`, the labels the classifier has classes
        for (loads the classifier)."""
        if params.cascade_prompt and self.classifier is not None:
            classifier = self.classifier.get()
            groups = class_groups(ontology.labels, classifier.class_names, ontology.class_names)
            return mapped_by_classes(ontology, groups, classifier.class_names, classifier.name, self.model_version)
        prompts, owners = prompts_for(ontology)
        predicted = {label: "prompts " + ", ".join(repr(p) for p, o in zip(prompts, owners) if o == label)
                     for label in ontology.labels}
        return Coverage(self.model_version, predicted, {})

    def prepare(self, images: list[np.ndarray], ontology: Ontology, params: PredictParams) -> _GroundedWork:
        """The prompts (each label's, or the one `cascade_prompt`) and the label each prompt stands for."""
        cascade = bool(params.cascade_prompt)
        if cascade and self.classifier is None:
            raise BadRequest("cascade_prompt needs a classifier, and this pipeline has none")
        prompts, owners = ([params.cascade_prompt], [params.cascade_prompt]) if cascade else prompts_for(ontology)
        return _GroundedWork(images, prompts, owners, ontology, params)

    def forward(self, work: _GroundedWork) -> list[Detections]:
        """uint8 (H, W, 3) images → one `Detections` per image: boxes (class-aware NMS, `max_regions`); with a
        cascade prompt the classifier names them (`backend.pipelines.cascade`); SAM masks when the ontology
        wants them and SAM loads (otherwise boxes only, logged)."""
        params = work.params
        found = self.detector.get().detect(work.images, work.prompts, params.box_threshold, params.text_threshold)
        out = []
        for image, raw in zip(work.images, found):
            dets = Detections(raw.xyxy, raw.scores, [work.owners[i] for i in raw.prompt_index], size_of(image))
            out.append(class_aware_nms(dets.clipped(), params.nms_iou, params.max_regions))
        if params.cascade_prompt:
            out = classify_regions(self.classifier.get(), work.images, out, work.ontology, params)
        if work.ontology.wants_masks and any(len(d) for d in out):
            sam = self.sam.try_get()
            if sam is None:
                log.warning("config asks for masks but SAM is unavailable: %s", self.sam.status().get("error"))
            else:
                out = add_sam_masks(sam, work.images, out)
        return out

    def finish(self, detections: list[Detections]) -> list[Detections]:
        return detections
