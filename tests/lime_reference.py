"""The `lime` package as the reference LIME: same classifier, superpixels, samples and box rule as ours.

`lime` perturbs and classifies (its own sampler, mean-colour fill and batches at full image size); its recorded
masks and predictions then go through our box rule (`explanation_to_detections`), as ours do. The windows are
classified through the same user-style `classifier_fn`. Used by the agreement test and `bench/lime_boxes.py`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from backend.adapters.classifier import ImageClassifier
from backend.core.detections import Detections, box_iou
from backend.core.params import PredictParams
from backend.pipelines.lime_boxes import explanation_to_detections
from backend.pipelines.lime_explain import Explanation, group_scores, window_boxes


def lime_package_detections(classifier: ImageClassifier, image: np.ndarray, segments: np.ndarray,
                            groups: dict[str, tuple[int, ...]], params: PredictParams, seed: int = 0) -> Detections:
    """Perturb and classify `image` with `lime.lime_image.LimeImageExplainer` and box it with our box rule."""
    expl = lime_package_explanation(classifier, image, segments, groups, params, seed)
    return explanation_to_detections(expl, list(groups), (image.shape[1], image.shape[0]), params, with_masks=False)


def lime_package_explanation(classifier: ImageClassifier, image: np.ndarray, segments: np.ndarray,
                             groups: dict[str, tuple[int, ...]], params: PredictParams, seed: int = 0) -> Explanation:
    """`image` perturbed and classified by `lime.lime_image.LimeImageExplainer`, as our `Explanation`.

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

    log_odds = []  # of every batch lime classifies, in order

    def classifier_fn(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(batch, dtype=np.float32)).permute(0, 3, 1, 2) / 255.0
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        probs, odds = group_scores(classifier.logits_normalized(classifier.normalize(x)).cpu(), membership)
        log_odds.append(odds.numpy())
        return probs.numpy()

    explainer = lime_image.LimeImageExplainer(random_state=seed)
    recorded = {}
    sample = explainer.data_labels

    def recording_data_labels(*args, **kwargs):  # keep lime's own masks and predictions for our box rule
        recorded["z"], recorded["y"] = sample(*args, **kwargs)
        return recorded["z"], recorded["y"]

    explainer.data_labels = recording_data_labels
    explainer.explain_instance(
        image, classifier_fn, labels=tuple(range(len(labels))), top_labels=None, hide_color=None,
        num_samples=params.num_samples, batch_size=10, segmentation_fn=lambda _img: full_segments,
        random_seed=seed)
    sample_log_odds = np.concatenate(log_odds)[:params.num_samples]  # lime's batches, before our own calls
    probs = classifier_fn(image[None])[0]
    windows = window_boxes(w, h, params.lime_windows)
    window_probs = np.array([classifier_fn(image[None, int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))])[0]
                             for x0, y0, x1, y1 in windows], np.float32).reshape(len(windows), len(labels))
    return Explanation(probs.astype(np.float32), segments, recorded["z"].astype(bool), recorded["y"].astype(np.float32),
                       sample_log_odds.astype(np.float32), mean_lab_colours(image, full_segments), windows,
                       window_probs)


def mean_lab_colours(image: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) image, int (H, W) labels 0..S-1 → float32 (S, 3) CIELAB mean colour of each superpixel."""
    from skimage.color import rgb2lab

    n = int(segments.max()) + 1
    counts = np.maximum(np.bincount(segments.ravel(), minlength=n), 1)
    rgb = np.stack([np.bincount(segments.ravel(), image[..., c].ravel() / 255.0, minlength=n) / counts
                    for c in range(3)], axis=1)
    return rgb2lab(rgb[:, None, :])[:, 0, :].astype(np.float32)


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
