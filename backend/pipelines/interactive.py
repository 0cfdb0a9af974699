"""Interactive pre-annotation: Label Studio smart-tool context (clicks and/or a rectangle) → one SAM region.

Label Studio sends `params.context.result`: the regions drawn in the current request, keypoints with
`is_positive` and/or a rectangle, in percent coordinates. Nothing is remembered between requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.adapters.sam import SamSegmenter
from backend.core.detections import Detections
from backend.core.errors import BadRequest
from backend.core.ontology import Ontology


@dataclass(frozen=True)
class InteractivePrompt:
    """Clicks as float32 (K, 2) pixel (x, y) with int (K,) labels (1 positive, 0 negative), an optional
    float32 (4,) xyxy pixel box, and the label the user picked (None if the context names none)."""

    points: np.ndarray
    point_labels: np.ndarray
    box: np.ndarray | None
    label: str | None


def parse_context(context: dict, image_size: tuple[int, int]) -> InteractivePrompt:
    """Label Studio `params.context` → pixel prompts; raises `BadRequest` naming what is wrong."""
    regions = context.get("result") if isinstance(context, dict) else None
    if not isinstance(regions, list) or not regions:
        raise BadRequest("interactive context needs a non-empty 'result' list of keypoints or a rectangle")
    w, h = image_size
    points, labels, box, label = [], [], None, None
    for i, region in enumerate(regions):
        kind = str(region.get("type", "")).lower() if isinstance(region, dict) else ""
        value = region.get("value") if isinstance(region, dict) else None
        if not isinstance(value, dict):
            raise BadRequest(f"interactive context region {i} has no 'value' object")
        try:
            if kind == "keypointlabels":
                points.append((float(value["x"]) / 100 * w, float(value["y"]) / 100 * h))
                labels.append(0 if region.get("is_positive") is False else 1)
            elif kind == "rectanglelabels":
                x, y = float(value["x"]) / 100 * w, float(value["y"]) / 100 * h
                box = np.array([x, y, x + float(value["width"]) / 100 * w, y + float(value["height"]) / 100 * h],
                               np.float32)
            else:
                raise BadRequest(f"interactive context region {i}: type {kind!r} is not a keypoint or rectangle")
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"interactive context region {i} ({kind}) is malformed: {exc!r}") from None
        names = value.get(kind)
        if isinstance(names, list) and names:
            label = label or str(names[0])
    return InteractivePrompt(np.array(points, np.float32).reshape(-1, 2), np.array(labels, np.int64), box, label)


def interactive_region(sam: SamSegmenter, cache_key: str, image: np.ndarray, ontology: Ontology,
                       context: dict) -> Detections:
    """One region for the prompt: SAM's mask (and its tight box), labelled with the context's label."""
    size = (image.shape[1], image.shape[0])
    prompt = parse_context(context, size)
    label = prompt.label if prompt.label in ontology.labels else (ontology.labels[0] if ontology.labels else None)
    if label is None:
        raise BadRequest("the label config has no labels for the interactive region")
    embedding = sam.embed_cached(cache_key, image)
    mask, score = sam.mask_from_prompts(embedding, prompt.points, prompt.point_labels, prompt.box)
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return Detections.empty(size, with_masks=True)
    xyxy = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    return Detections(xyxy, [min(max(score, 0.0), 1.0)], [label], size, mask[None])
