"""Classifier → LIME → boxes: explain each image, keep the positively weighted superpixels, box them.

Several objects of one label give several boxes (one per connected group of kept superpixels);
every label whose class probability passes `class_threshold` is explained. Masks (for Brush/Polygon
controls) are the kept superpixels inside each box.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from backend.adapters.base import LazyModel
from backend.adapters.classifier import ImageClassifier
from backend.core.detections import Detections, class_aware_nms, mask_box
from backend.core.errors import BadRequest
from backend.core.ontology import Ontology
from backend.core.params import PredictParams
from backend.core.sizes import Size, size_of
from backend.pipelines.base import Steps
from backend.pipelines.label_mapping import class_groups
from backend.pipelines.lime_explain import Explanation, explain, superpixels


def select_superpixels(weights: np.ndarray, min_weight: float, max_superpixels: int) -> np.ndarray:
    """Indices of superpixels kept for a label: positive, >= `min_weight` x the top weight, at most `max_superpixels`.

    The same rule as `lime`'s `get_image_and_mask(positive_only=True, num_features=max_superpixels,
    min_weight=min_weight * max(weights))`.
    """
    top = float(weights.max()) if weights.size else 0.0
    if top <= 0:
        return np.zeros(0, dtype=int)
    order = np.argsort(-weights, kind="stable")
    order = order[(weights[order] > 0) & (weights[order] > min_weight * top)]
    return order[:max_superpixels]


def components_to_boxes(selected_mask: np.ndarray, segments: np.ndarray, weights: np.ndarray,
                        image_size: Size) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """Connected groups of kept superpixels → [(xyxy in image pixels, summed weight, bool (h, w) mask)].

    selected_mask: bool (h, w) kept pixels at superpixel-map resolution. Groups closer than about a
    quarter of a superpixel are merged so one object split by a thin unkept superpixel still gets one box.
    """
    h, w = segments.shape
    n_seg = int(segments.max()) + 1
    radius = max(1, int(round(0.25 * np.sqrt(h * w / max(n_seg, 1)))))
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    dilated = cv2.dilate(selected_mask.astype(np.uint8), kernel) > 0
    grouped, count = ndimage.label(dilated, np.ones((3, 3), bool))
    width, height = image_size
    sx, sy = width / w, height / h
    out = []
    for k in range(1, count + 1):
        mask = selected_mask & (grouped == k)
        box = mask_box(mask)
        if box is None:
            continue
        xyxy = box * np.array([sx, sy, sx, sy], np.float32)
        strength = float(weights[np.unique(segments[mask])].sum())
        out.append((xyxy, strength, mask))
    return out


def explanation_to_detections(expl: Explanation, labels: list[str], image_size: Size,
                              params: PredictParams, with_masks: bool) -> Detections:
    """Boxes for every label group whose probability >= `params.class_threshold`.

    Region score = label probability x (the group's summed weight / the strongest group's of that label);
    groups weaker than `params.lime_min_component` x the strongest are dropped as noise.
    """
    boxes, scores, names, masks = [], [], [], []
    for j, label in enumerate(labels):
        prob = float(expl.probabilities[j])
        if prob < params.class_threshold:
            continue
        kept = select_superpixels(expl.weights[j], params.lime_min_weight, params.lime_max_superpixels)
        if kept.size == 0:
            continue
        parts = components_to_boxes(np.isin(expl.segments, kept), expl.segments, expl.weights[j], image_size)
        strongest = max(s for _, s, _ in parts)
        for xyxy, strength, mask in parts:
            if strength < params.lime_min_component * strongest:
                continue
            boxes.append(xyxy)
            scores.append(prob * max(strength, 0.0) / strongest)
            names.append(label)
            masks.append(mask)
    if not boxes:
        return Detections.empty(image_size, with_masks)
    full_masks = _upsample_masks(np.stack(masks), image_size) if with_masks else None
    return Detections(np.stack(boxes), np.array(scores), names, image_size, full_masks)


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

    def prepare(self, images: list[np.ndarray], ontology: Ontology, params: PredictParams) -> _LimeWork:
        """uint8 (H, W, 3) images → the label groups to explain and superpixel maps being computed (SLIC runs in
        its own threads: the maps of the next images are made while the device explains the first)."""
        classifier = self.classifier.get()
        groups = class_groups(ontology.labels, classifier.class_names, ontology.class_names)
        if not groups:
            raise BadRequest(
                f"none of the labels {list(ontology.labels)} matches a class of classifier {classifier.name}; "
                "name its classes with <Label predicted_values=\"...\"> or extra_params {\"classes\": {...}}")
        segments = [self._segmenter.submit(superpixels, image, params.superpixels) for image in images]
        return _LimeWork(classifier, images, groups, segments, ontology, params)

    def forward(self, work: _LimeWork) -> _LimeWork:
        """The LIME explanations (perturbations classified on the device)."""
        work.explanations = explain(work.classifier, work.images, (f.result() for f in work.segments),
                                    list(work.groups.values()), work.params.num_samples, work.params.lime_input_size)
        return work

    def finish(self, work: _LimeWork) -> list[Detections]:
        """Explanations → boxes (and masks) per image, class-aware NMS, `max_regions`."""
        out = []
        for image, expl in zip(work.images, work.explanations):
            dets = explanation_to_detections(expl, list(work.groups), size_of(image), work.params,
                                             work.ontology.wants_masks)
            out.append(class_aware_nms(dets, work.params.nms_iou, work.params.max_regions))
        return out
