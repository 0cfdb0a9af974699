"""The `lime` package as the reference LIME: same classifier, superpixels, samples and box rule as ours.

Used by the agreement test and `bench/lime_boxes.py`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from backend.adapters.classifier import ImageClassifier
from backend.core.detections import Detections, box_iou
from backend.core.params import PredictParams
from backend.pipelines.lime_boxes import explanation_to_detections
from backend.pipelines.lime_explain import Explanation


def lime_package_detections(classifier: ImageClassifier, image: np.ndarray, segments: np.ndarray,
                            groups: dict[str, tuple[int, ...]], params: PredictParams, seed: int = 0) -> Detections:
    """Explain `image` with `lime.lime_image.LimeImageExplainer` and box it with our box rule.

    segments: int (h, w) superpixels at reduced size (as ours); lime gets them upsampled to full size.
    The classifier sees each perturbed full-size image resized to its input size, `lime`'s batch size 10.
    """
    from lime import lime_image

    h, w = image.shape[:2]
    full_segments = F.interpolate(torch.from_numpy(segments)[None, None].float(), size=(h, w),
                                  mode="nearest")[0, 0].long().numpy()
    labels = list(groups)
    membership = torch.zeros(len(classifier.class_names), len(labels))
    for j, label in enumerate(labels):
        membership[list(groups[label]), j] = 1.0
    size = classifier.input_size  # a user's classifier_fn resizes to the classifier's own input size

    def classifier_fn(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(batch, dtype=np.float32)).permute(0, 3, 1, 2) / 255.0
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return (classifier.probabilities(x).cpu() @ membership).numpy()

    explainer = lime_image.LimeImageExplainer(random_state=seed)
    explanation = explainer.explain_instance(
        image, classifier_fn, labels=tuple(range(len(labels))), top_labels=None, hide_color=None,
        num_samples=params.num_samples, batch_size=10, segmentation_fn=lambda _img: full_segments,
        random_seed=seed)
    n_seg = int(segments.max()) + 1
    weights = np.zeros((len(labels), n_seg), np.float32)
    for j in range(len(labels)):
        for segment, weight in explanation.local_exp[j]:
            weights[j, segment] = weight
    probs = classifier_fn(image[None])[0]
    expl = Explanation(weights, probs.astype(np.float32), segments)
    return explanation_to_detections(expl, labels, (w, h), params, with_masks=False)


def mean_matched_iou(ours: Detections, reference: Detections) -> float:
    """Mean over both box sets of each box's best IoU with a same-label box of the other set (1.0 if both empty)."""
    if len(ours) == 0 and len(reference) == 0:
        return 1.0
    values = []
    for a, b in ((ours, reference), (reference, ours)):
        for box, label in zip(a.xyxy, a.labels):
            same = b.xyxy[[lab == label for lab in b.labels]]
            values.append(float(box_iou(box[None], same).max()) if len(same) else 0.0)
    return float(np.mean(values))
