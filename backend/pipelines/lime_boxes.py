"""Classifier → LIME → boxes: perturb and classify each image, find its objects, box them.

Every object of every label gets a box, also a label that the whole image barely shows (a small second
object): objects are found per label from the perturbations (`backend.pipelines.lime_objects`) and kept when
the label's probability in the best view showing them (whole image, a window around them, the perturbed copies
that show them) reaches `class_threshold`; that probability is the box's score. Masks (for Brush/Polygon
controls) are the object's superpixels.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from backend.adapters.base import LazyModel
from backend.adapters.classifier import ImageClassifier
from backend.core.detections import Detections, class_aware_nms
from backend.core.errors import BadRequest
from backend.core.ontology import Ontology
from backend.core.params import PredictParams
from backend.core.sizes import Size, size_of
from backend.pipelines.base import Steps
from backend.pipelines.coverage import Coverage, mapped_by_classes
from backend.pipelines.label_mapping import class_groups
from backend.pipelines.lime_explain import Explanation, explain, superpixels
from backend.pipelines.lime_objects import find_objects


def explanation_to_detections(expl: Explanation, labels: list[str], image_size: Size,
                              params: PredictParams, with_masks: bool) -> Detections:
    """One box per object found in `expl` (`find_objects`) for the label groups `labels`, scored by its evidence.

    image_size: (width, height) in pixels; masks: bool (N, height, width), the objects' superpixels.
    """
    objects = find_objects(expl, image_size, params.lime_min_component, params.lime_min_weight,
                           params.lime_max_superpixels, params.class_threshold)
    if not objects:
        return Detections.empty(image_size, with_masks)
    masks = None
    if with_masks:
        masks = _upsample_masks(np.stack([np.isin(expl.segments, o.superpixels) for o in objects]), image_size)
    return Detections(np.stack([o.box for o in objects]), np.array([o.score for o in objects]),
                      [labels[o.label] for o in objects], image_size, masks)


def _upsample_masks(masks: np.ndarray, image_size: Size) -> np.ndarray:
    width, height = image_size
    tensor = torch.from_numpy(masks)[:, None].float()
    return F.interpolate(tensor, size=(height, width), mode="nearest")[:, 0].bool().numpy()


@dataclass
class _LimeWork:
    """One call's state between the steps: groups maps each label to its classifier class indices; segments are
    futures of int32 (h, w) superpixel maps; explanations are filled by `forward`."""

    classifier: ImageClassifier
    images: list[np.ndarray]
    groups: dict[str, tuple[int, ...]]
    segments: list[Future]
    ontology: Ontology
    params: PredictParams
    explanations: list[Explanation] = field(default_factory=list)


# LIME's local linear model has one weight per superpixel; with fewer than ~3 perturbations per weight the fitted
# weights are noise (chelsea at 128 samples x 80 superpixels: a 100-pixel box on the cat's nose instead of its head).
MIN_SAMPLES_PER_SUPERPIXEL = 3


def superpixel_count(params: PredictParams) -> int:
    """Superpixels asked of SLIC: `params.superpixels`, at most num_samples / MIN_SAMPLES_PER_SUPERPIXEL."""
    return max(8, min(params.superpixels, params.num_samples // MIN_SAMPLES_PER_SUPERPIXEL))


class LimeBoxesPipeline(Steps):
    """`PIPELINE=lime`: boxes from LIME explanations of an image classifier."""

    name = "lime"

    def __init__(self, classifier: LazyModel[ImageClassifier]):
        self.classifier = classifier
        # SLIC runs on the CPU (and releases the GIL): segment the next images while the device explains.
        self._segmenter = ThreadPoolExecutor(max_workers=max(1, min(8, (os.cpu_count() or 2) - 1)),
                                             thread_name_prefix="superpixels")

    @property
    def model_version(self) -> str:
        return f"lime-{self.classifier.source}"

    def required_models(self) -> list[LazyModel]:
        return [self.classifier]

    def coverage(self, ontology: Ontology, params: PredictParams) -> Coverage:
        """The labels some class of the classifier stands for (loads the classifier)."""
        classifier = self.classifier.get()
        groups = class_groups(ontology.labels, classifier.class_names, ontology.class_names)
        return mapped_by_classes(ontology, groups, classifier.class_names, classifier.name, self.model_version)

    def prepare(self, images: list[np.ndarray], ontology: Ontology, params: PredictParams) -> _LimeWork:
        """uint8 (H, W, 3) images → the label groups to explain and superpixel maps being computed (SLIC runs in
        its own threads: the maps of the next images are made while the device explains the first)."""
        classifier = self.classifier.get()
        groups = class_groups(ontology.labels, classifier.class_names, ontology.class_names)
        if not groups:
            raise BadRequest(
                f"none of the labels {list(ontology.labels)} matches a class of classifier {classifier.name}; "
                "give labels predicted_values=\"class, class\" in the label config, or extra_params {\"classes\": {...}}")
        n_segments = superpixel_count(params)
        segments = [self._segmenter.submit(superpixels, image, n_segments) for image in images]
        return _LimeWork(classifier, images, groups, segments, ontology, params)

    def forward(self, work: _LimeWork) -> _LimeWork:
        """The LIME explanations (perturbations classified on the device)."""
        work.explanations = explain(work.classifier, work.images, (f.result() for f in work.segments),
                                    list(work.groups.values()), work.params.num_samples, work.params.lime_input_size,
                                    windows_per_side=work.params.lime_windows)
        return work

    def finish(self, work: _LimeWork) -> list[Detections]:
        """Explanations → boxes (and masks) per image, class-aware NMS, `max_regions`."""
        out = []
        for image, expl in zip(work.images, work.explanations):
            dets = explanation_to_detections(expl, list(work.groups), size_of(image), work.params,
                                             work.ontology.wants_masks)
            out.append(class_aware_nms(dets, work.params.nms_iou, work.params.max_regions))
        return out
