"""Per-project parameters: defaults, overridden by the ML connection's `extra_params` (prediction and retraining).

Every parameter has a documented range (`RANGES`, `CHOICES`, `MAX_TEXT`); a value outside it is refused with a
`BadRequest` naming the key, so a stored project can never hold a value that makes its predictions fail.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from backend.core.errors import BadRequest

# inclusive (low, high) for every numeric parameter
RANGES: dict[str, tuple[float, float]] = {
    "box_threshold": (0.0, 1.0), "text_threshold": (0.0, 1.0), "nms_iou": (0.0, 1.0),
    "max_regions": (1, 1000), "class_threshold": (0.0, 1.0), "num_samples": (8, 4096), "superpixels": (4, 400),
    "lime_input_size": (32, 512), "lime_min_weight": (0.0, 1.0), "lime_max_superpixels": (1, 400), "lime_windows": (1, 4),
    "lime_min_component": (0.0, 1.0), "polygon_tolerance": (0.0, 1.0),
    "train_min_annotations": (1, 1_000_000), "train_min_new": (1, 1_000_000), "train_epochs": (1, 10_000),
    "train_time_budget_s": (10, 86_400), "train_image_size": (64, 2048),
    "video_frame_step": (1, 1000), "video_max_frames": (1, 100_000), "video_max_seconds": (0.0, 86_400.0),
    "track_activation_threshold": (0.0, 1.0), "track_lost_frames": (0, 100_000), "track_matching_threshold": (0.0, 1.0),
    "track_min_length": (1, 1000), "keyframe_iou": (0.0, 1.0), "keyframe_max_gap": (1, 100_000),
    "train_video_step": (1, 1000), "train_seconds_per_image": (0, 3600), "accept_threshold": (0.0, 1.0),
    "concept_threshold": (0.0, 1.0), "mask_threshold": (0.0, 1.0), "propagate_max_frames": (1, 100_000),
    "propagate_max_seconds": (0.0, 86_400.0),
}
CHOICES: dict[str, tuple] = {"train_augment": ("flip", "dihedral"), "train_tta_views": (1, 2, 4, 8),
                             "review_score": ("errors", "mirror", "confidence"), "task_order": ("uncertainty", "keep")}
MAX_TEXT = 200  # characters of a string parameter, a prompt or a class name
MAX_MAPPED_LABELS = 1000  # entries of `prompts` / `classes`
MAX_NAMES_PER_LABEL = 50


@dataclass(frozen=True)
class PredictParams:
    """Prediction knobs a project admin may set in Label Studio's "Extra params" JSON.

    Thresholds are in [0, 1]; `box_threshold` is also the score cut of a project's trained detector.
    `cascade_prompt` (grounded pipeline): one generic prompt finds the objects and the classifier names each box
    (labels mapped as for LIME). `prompts` maps a label value to its text prompts and `classes` a label value to
    classifier class names; both override what the label config says. `auto_predict`: new tasks and tasks
    without annotations (when a new trained version becomes active) are pre-labelled in the background.
    `review_score`: how each prediction's score is made, "errors" (the corrections expected from the agreement with
    a prediction on the mirrored image, a second pass: more doubtful regions, lower score), "mirror" (the mean of
    that agreement) or "confidence" (region confidences only). `task_order`: "uncertainty" sets the Label
    Studio project's task sampling to "Uncertainty sampling" once (lowest score first, spread over clusters), "keep"
    leaves it alone (`backend.jobs.project_setup`). `accept_threshold` (0 = not set): the prediction score at which
    the review page states how many waiting tasks would be accepted without review and how many of those need a
    correction (`backend.review.routing.hybrid_routing`); it is shown, never applied. `video_*`: videos are predicted on every
    `video_frame_step`-th frame, at most `video_max_frames` frames or `video_max_seconds` seconds (0: no limit);
    `track_*` are the tracker's thresholds (`backend.pipelines.tracking.TrackingParams`); keyframes keep Label
    Studio's interpolation within IoU `keyframe_iou` of every tracked box, and a track's box is ended after
    `keyframe_max_gap` video frames without a detection.
    SAM 3 (`sam3` pipeline): an instance is kept when its score reaches `concept_threshold`, and its mask is the
    pixels whose probability reaches `mask_threshold`. Box propagation (an annotator's `VideoRectangle` boxes carried
    through the following frames, `backend.predictions.propagation`; `carry_video_boxes` false: video tasks always get
    the pipeline's tracks): each box at most `propagate_max_frames` frames or `propagate_max_seconds` seconds of video
    (0: no limit) after its last keyframe.
    LIME (`backend.pipelines.lime_objects`): at most `num_samples` / 3 of the `superpixels` are used; an object is a group of touching superpixels seeded by one with weight
    >= `lime_min_component` x the label's top weight and grown over those >= `lime_min_weight` x the top weight (at
    most `lime_max_superpixels` per object); it is kept when its label's probability in the best view showing it
    reaches `class_threshold`; `lime_windows` per side: the classifier also sees lime_windows^2 overlapping
    half-size windows of the image (1 = none).
    """

    pipeline: str = ""
    box_threshold: float = 0.3
    text_threshold: float = 0.25
    nms_iou: float = 0.5
    max_regions: int = 50
    class_threshold: float = 0.15
    num_samples: int = 256
    superpixels: int = 80
    lime_input_size: int = 224
    lime_min_weight: float = 0.15
    lime_max_superpixels: int = 40
    lime_min_component: float = 0.5
    polygon_tolerance: float = 1.0
    cascade_prompt: str = ""
    prompts: dict = field(default_factory=dict)
    classes: dict = field(default_factory=dict)
    lime_windows: int = 3
    auto_predict: bool = True
    review_score: str = "errors"
    task_order: str = "uncertainty"
    accept_threshold: float = 0.0
    video_frame_step: int = 5
    video_max_frames: int = 300
    video_max_seconds: float = 0.0
    track_activation_threshold: float = 0.25
    track_lost_frames: int = 30
    track_matching_threshold: float = 0.8
    track_min_length: int = 2
    keyframe_iou: float = 0.9
    keyframe_max_gap: int = 10
    concept_threshold: float = 0.5
    mask_threshold: float = 0.5
    propagate_max_frames: int = 300
    propagate_max_seconds: float = 0.0
    carry_video_boxes: bool = True

    def with_overrides(self, extra: dict[str, Any] | None) -> "PredictParams":
        """A copy with the prediction keys of `extra` applied (see `ProjectParams.from_extra`)."""
        return replace(self, **_changes(extra, self, ""))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainParams:
    """Retraining knobs, the `train_*` keys of the extra params. Annotation events start a job after `min_new` of
    them, and it trains once the project has `min_annotations` annotations (Label Studio's own count). A detector
    trains for `epochs` passes or `time_budget_s` seconds (whichever ends first) on images whose shorter side is
    `image_size` pixels, with `augment` "flip" (horizontal flips) or "dihedral" (flips and 90-degree turns, for
    top-down imagery), and predicts on `tta_views` dihedral views fused (1 = off; 2, 4, 8 cost that many passes).
    From video annotations it learns on the keyframes and every `video_step`-th frame of each annotated span.
    The budget of one training is `seconds_per_image` per training image, at least a minute, at most `time_budget_s`
    (0: always `time_budget_s`), so the first versions of a project arrive while its annotators are still at work.
    With `warm_start` a new version starts from the active version's weights (labels it knew keep their rows).
    """

    min_annotations: int = 10
    min_new: int = 5
    epochs: int = 100
    time_budget_s: int = 900
    image_size: int = 512
    augment: str = "flip"
    tta_views: int = 1
    video_step: int = 5
    warm_start: bool = True
    seconds_per_image: int = 4


TRAIN_PREFIX = "train_"  # extra-params key of TrainParams.x: "train_x"


@dataclass(frozen=True)
class ProjectParams:
    """Everything a project's extra params set: `predict` for the pipelines, `train` for retraining."""

    predict: PredictParams = field(default_factory=PredictParams)
    train: TrainParams = field(default_factory=TrainParams)

    @classmethod
    def from_extra(cls, extra: dict[str, Any] | None) -> "ProjectParams":
        """Defaults with `extra` applied; unknown keys, wrong types or values out of range raise `BadRequest`."""
        if extra and not isinstance(extra, dict):
            raise BadRequest("extra_params must be a JSON object")
        extra = extra or {}
        unknown = [k for k in extra if k not in extra_keys()]
        if unknown:
            raise BadRequest(f"extra_params: unknown key {str(unknown[0])[:MAX_TEXT]!r}; known keys: {extra_keys()}")
        train = {k: v for k, v in extra.items() if k.startswith(TRAIN_PREFIX)}
        predict = {k: v for k, v in extra.items() if not k.startswith(TRAIN_PREFIX)}
        return cls(PredictParams().with_overrides(predict), replace(TrainParams(), **_changes(train, TrainParams(),
                                                                                             TRAIN_PREFIX)))


def extra_keys() -> list[str]:
    """Every key the extra params may hold, sorted."""
    return sorted([f.name for f in fields(PredictParams)] + [TRAIN_PREFIX + f.name for f in fields(TrainParams)])


def _changes(extra: dict[str, Any] | None, defaults, prefix: str) -> dict[str, Any]:
    """Validated field values of `defaults`' dataclass from `extra` (keys = prefix + field name)."""
    if not extra:
        return {}
    if not isinstance(extra, dict):
        raise BadRequest("extra_params must be a JSON object")
    known = {prefix + f.name: f.name for f in fields(defaults)}
    changes: dict[str, Any] = {}
    for key, value in extra.items():
        if key not in known:
            raise BadRequest(f"extra_params: unknown key {str(key)[:MAX_TEXT]!r}; known keys: {extra_keys()}")
        changes[known[key]] = _coerce(key, value, getattr(defaults, known[key]))
    return changes


def _coerce(key: str, value: Any, default: Any) -> Any:
    if key in CHOICES:
        if isinstance(value, bool) or value not in CHOICES[key]:
            raise BadRequest(f"extra_params.{key} must be one of {CHOICES[key]}, got {_show(value)}")
        return value
    if isinstance(default, dict):
        return _label_map(key, value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise BadRequest(f"extra_params.{key} must be true or false, got {_show(value)}")
        return value
    if isinstance(default, str):
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise BadRequest(f"extra_params.{key} must be a string of at most {MAX_TEXT} characters")
        return value
    low, high = RANGES[key]
    whole = isinstance(default, int)
    expected = f"a whole number between {low} and {high}" if whole else f"a number between {low:g} and {high:g}"
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not numeric or not math.isfinite(value) or (whole and int(value) != value) or not low <= value <= high:
        raise BadRequest(f"extra_params.{key} must be {expected}, got {_show(value)}")
    return int(value) if whole else float(value)


def _label_map(key: str, value: Any) -> dict[str, tuple[str, ...]]:
    message = (f"extra_params.{key} must map label values to a string or a list of strings (at most "
               f"{MAX_MAPPED_LABELS} labels, {MAX_NAMES_PER_LABEL} strings each, {MAX_TEXT} characters per string)")
    if not isinstance(value, dict) or len(value) > MAX_MAPPED_LABELS:
        raise BadRequest(message)
    out = {}
    for label, names in value.items():
        names = [names] if isinstance(names, str) else names
        if (not isinstance(names, list) or len(names) > MAX_NAMES_PER_LABEL or len(label) > MAX_TEXT
                or not all(isinstance(n, str) and len(n) <= MAX_TEXT for n in names)):
            raise BadRequest(message)
        out[label] = tuple(names)
    return out


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "…"
