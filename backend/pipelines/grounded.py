"""`PIPELINE=grounded`: label prompts → Grounding DINO boxes → (SAM masks when the config asks for masks).

All images of a request go through each model in batches. Every box is labelled with the exact label
value whose prompt matched; class-aware NMS and `max_regions` apply per image.
"""

from __future__ import annotations

import logging

import numpy as np

from backend.adapters.base import LazyModel
from backend.adapters.classifier import ImageClassifier
from backend.adapters.grounding_dino import GroundingDinoDetector
from backend.adapters.sam import SamSegmenter
from backend.core.detections import Detections, class_aware_nms
from backend.core.errors import BadRequest
from backend.core.ontology import Ontology
from backend.core.params import PredictParams
from backend.pipelines.cascade import classify_regions

log = logging.getLogger(__name__)


def prompts_for(ontology: Ontology) -> tuple[list[str], list[str]]:
    """(prompts, owning label of each prompt) for every label of the ontology, in label order."""
    prompts, owners = [], []
    for label in ontology.labels:
        for prompt in ontology.prompts.get(label, (label,)):
            prompts.append(prompt)
            owners.append(label)
    return prompts, owners


def short_name(source: str) -> str:
    return source.rstrip("/").rsplit("/", 1)[-1]


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


class GroundedPipeline:
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

    def predict(self, images: list[np.ndarray], ontology: Ontology, params: PredictParams) -> list[Detections]:
        """uint8 (H, W, 3) images → one `Detections` per image; masks when the ontology wants them and
        SAM loads (otherwise boxes only, logged). With `params.cascade_prompt`, that one prompt finds the
        objects and the classifier names them (`backend.pipelines.cascade`)."""
        cascade = bool(params.cascade_prompt)
        if cascade and self.classifier is None:
            raise BadRequest("cascade_prompt needs a classifier, and this pipeline has none")
        prompts, owners = ([params.cascade_prompt], [params.cascade_prompt]) if cascade else prompts_for(ontology)
        found = self.detector.get().detect(images, prompts, params.box_threshold, params.text_threshold)
        out = []
        for image, raw in zip(images, found):
            size = (image.shape[1], image.shape[0])
            dets = Detections(raw.xyxy, raw.scores, [owners[i] for i in raw.prompt_index], size).clipped()
            out.append(class_aware_nms(dets, params.nms_iou, params.max_regions))
        if cascade:
            out = classify_regions(self.classifier.get(), images, out, ontology, params)
        if ontology.wants_masks and any(len(d) for d in out):
            sam = self.sam.try_get()
            if sam is None:
                log.warning("config asks for masks but SAM is unavailable: %s", self.sam.status().get("error"))
            else:
                out = add_sam_masks(sam, images, out)
        return out
