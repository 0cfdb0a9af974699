"""Cascade (e.g. road signs): one generic prompt finds the objects, an image classifier names them.

With `extra_params.cascade_prompt` set (e.g. "road sign"), the grounded pipeline detects with that prompt
only; every box is then cropped (with some context) and classified, and gets the project label whose
classifier classes have the highest summed probability on the crop. Boxes whose best label stays under
`class_threshold` are dropped. Score = detection score x label probability.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from backend.adapters.classifier import ImageClassifier
from backend.core.detections import Detections
from backend.core.errors import BadRequest
from backend.core.ontology import Ontology
from backend.core.params import PredictParams
from backend.pipelines.label_mapping import class_groups

CROP_CONTEXT = 0.1  # each side of a box grows by this fraction of its size before cropping


def crop_batch(image: np.ndarray, xyxy: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (H, W, 3) image and float (N, 4) xyxy pixel boxes → float32 (N, 3, size, size) RGB crops in
    [0, 1], each box grown by `CROP_CONTEXT` and clipped to the image."""
    h, w = image.shape[:2]
    pixels = torch.from_numpy(image).permute(2, 0, 1).float().div(255)
    crops = []
    for x1, y1, x2, y2 in np.asarray(xyxy, np.float32).reshape(-1, 4):
        mx, my = (x2 - x1) * CROP_CONTEXT, (y2 - y1) * CROP_CONTEXT
        left, top = int(max(0, np.floor(x1 - mx))), int(max(0, np.floor(y1 - my)))
        right, bottom = int(min(w, np.ceil(x2 + mx))), int(min(h, np.ceil(y2 + my)))
        crop = pixels[:, top:max(bottom, top + 1), left:max(right, left + 1)][None]
        crops.append(F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False))
    return torch.cat(crops) if crops else torch.zeros(0, 3, size, size)


def classify_regions(classifier: ImageClassifier, images: list[np.ndarray], found: list[Detections],
                     ontology: Ontology, params: PredictParams) -> list[Detections]:
    """Give every box the project label the classifier sees in it (see the module docstring)."""
    groups = class_groups(ontology.labels, classifier.class_names, ontology.class_names)
    if not groups:
        raise BadRequest(f"cascade: none of the labels {list(ontology.labels)} matches a class of classifier "
                         f"{classifier.name}; give labels predicted_values=\"class, class\" in the label config, or "
                         "extra_params {\"classes\": {...}}")
    labels = list(groups)
    out = []
    for image, dets in zip(images, found):
        if not len(dets):
            out.append(Detections.empty(dets.image_size))
            continue
        probs = classifier.probabilities(crop_batch(image, dets.xyxy, classifier.input_size)).cpu()
        per_label = torch.stack([probs[:, list(groups[label])].sum(dim=1) for label in labels], dim=1).numpy()
        best = per_label.argmax(axis=1)
        best_prob = per_label[np.arange(len(best)), best]
        keep = best_prob >= params.class_threshold
        out.append(Detections(dets.xyxy[keep], dets.scores[keep] * best_prob[keep],
                              [labels[i] for i in best[keep]], dets.image_size))
    return out
