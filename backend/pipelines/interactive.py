"""Interactive pre-annotation: Label Studio smart-tool context (clicks and/or a rectangle) → one SAM region.

Label Studio sends `params.context.result`: the regions drawn in the current request, keypoints with
`is_positive` and/or a rectangle, in percent coordinates. Nothing is remembered between requests but SAM's
image embeddings (an LRU keyed by the image URL), so further clicks on the same image cost only the mask decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.adapters.base import LazyModel
from backend.adapters.hub import short_name
from backend.adapters.sam import SamSegmenter
from backend.core.detections import Detections, mask_box
from backend.core.errors import BadRequest
from backend.core.ontology import Ontology
from backend.core.params import PredictParams
from backend.core.sizes import Size, size_of
from backend.pipelines.base import Steps

# the control an interactive region is drawn on, first the one the config has
INTERACTIVE_CONTROL_ORDER = ("BrushLabels", "PolygonLabels", "RectangleLabels")


@dataclass(frozen=True)
class InteractivePrompt:
    """Clicks as float32 (K, 2) pixel (x, y) with int (K,) labels (1 positive, 0 negative), an optional
    float32 (4,) xyxy pixel box, and the label the user picked (None if the context names none)."""

    points: np.ndarray
    point_labels: np.ndarray
    box: np.ndarray | None
    label: str | None


def parse_context(context: dict, image_size: Size) -> InteractivePrompt:
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


def interactive_label(prompt: InteractivePrompt, ontology: Ontology) -> str:
    """The label the user picked if the config has it, else the config's first label."""
    if prompt.label in ontology.labels:
        return prompt.label
    if not ontology.labels:
        raise BadRequest("the label config has no labels for the interactive region")
    return ontology.labels[0]


@dataclass
class _ClickWork:
    image: np.ndarray
    prompt: InteractivePrompt
    label: str
    mask: np.ndarray | None = None
    score: float = 0.0


class InteractivePipeline(Steps):
    """One smart-tool request: `context` is Label Studio's `params.context`; `cache_key` names the image for
    SAM's embedding cache (its URL). Built per request (cheap); SAM itself is the process's `LazyModel`."""

    name = "interactive"

    def __init__(self, sam: LazyModel[SamSegmenter], context: dict, cache_key: str):
        self.sam = sam
        self.context = context
        self.cache_key = cache_key

    @property
    def model_version(self) -> str:
        return f"interactive-{short_name(self.sam.source)}"

    def required_models(self) -> list[LazyModel]:
        return [self.sam]

    def prepare(self, images: list[np.ndarray], ontology: Ontology, params: PredictParams) -> _ClickWork:
        """The first uint8 (H, W, 3) image and the clicks / rectangle of the context in its pixels."""
        image = images[0]
        prompt = parse_context(self.context, size_of(image))
        return _ClickWork(image, prompt, interactive_label(prompt, ontology))

    def forward(self, work: _ClickWork) -> _ClickWork:
        """SAM's best mask for the prompt (the image embedding from the cache when this image was seen)."""
        sam = self.sam.get()
        embedding = sam.embed_cached(self.cache_key, work.image)
        work.mask, work.score = sam.mask_from_prompts(embedding, work.prompt.points, work.prompt.point_labels,
                                                      work.prompt.box)
        return work

    def finish(self, work: _ClickWork) -> list[Detections]:
        """One region: the mask, its tight box and SAM's predicted IoU as the score (none for an empty mask)."""
        size = size_of(work.image)
        box = mask_box(work.mask)
        if box is None:
            return [Detections.empty(size, with_masks=True)]
        return [Detections(box[None], [min(max(work.score, 0.0), 1.0)], [work.label], size, work.mask[None])]


def interactive_region(sam: SamSegmenter, cache_key: str, image: np.ndarray, ontology: Ontology,
                       context: dict) -> Detections:
    """One region for a smart-tool `context` on a uint8 (H, W, 3) image with a loaded SAM (scripts, benches)."""
    pipeline = InteractivePipeline(LazyModel.loaded("sam", sam.name, sam), context, cache_key)
    return pipeline.predict([image], ontology, PredictParams())[0]
