"""Per-project parameters: defaults, overridden by the ML connection's `extra_params` (prediction and retraining).

Every parameter has a documented range (`RANGES`, `CHOICES`, `MAX_TEXT`); a value outside it is refused with a
`BadRequest` naming the key, so a stored project can never hold a value that makes its predictions fail.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from backend.core.described import described
from backend.core.errors import BadRequest

MAX_TEXT = 200  # characters of a string parameter, a prompt or a class name
MAX_MAPPED_LABELS = 1000  # entries of `prompts` / `classes`
MAX_NAMES_PER_LABEL = 50


@dataclass(frozen=True)
class PredictParams:
    """Prediction knobs a project admin may set in Label Studio's "Extra params" JSON. Each field's meaning, default
    and range are said once, in its `described` metadata (the README's table is generated from it). Groups, in
    order: the pipeline; LIME (`backend.pipelines.lime_objects`); Grounding DINO and SAM 3 thresholds; regions (NMS,
    cap, polygons); the cascade and label mappings (`prompts` / `classes` override the label config); background
    pre-labelling; video sampling, tracking (`backend.pipelines.tracking.TrackingParams`) and keyframes; carrying an
    annotator's video boxes (`backend.predictions.propagation`); the review-priority score, task order and hybrid
    routing (`backend.review.routing`).
    """

    pipeline: str = described("", shown='`""` (use `PIPELINE`)', valid="`auto`, `sam3`, `grounded`, `lime`, `trained`",
                              doc="pipeline for this project")
    class_threshold: float = described(0.15, range=(0.0, 1.0), doc="LIME: keep an object when its label's "
        "probability in the best view showing it (whole image, a window around it, the perturbed copies showing it) "
        "reaches this; cascade: the crop's label probability")
    num_samples: int = described(256, range=(8, 4096), doc="LIME: perturbations per image")
    superpixels: int = described(80, range=(4, 400), doc="LIME: SLICO superpixels per image (at most `num_samples` / "
        "3: the local model needs ~3 perturbations per superpixel)")
    lime_input_size: int = described(224, range=(32, 512), doc="LIME: size the perturbations are classified at")
    lime_min_weight: float = described(0.15, range=(0.0, 1.0), doc="LIME: an object grows over touching superpixels "
        "with weight above this × the label's top weight (and above their noise) …")
    lime_max_superpixels: int = described(40, range=(1, 400), doc="… at most this many per object (its strongest)")
    lime_min_component: float = described(0.5, range=(0.0, 1.0), doc="LIME: an object needs a superpixel with weight "
        "above this × the label's top weight (and 2 standard errors)")
    lime_windows: int = described(3, range=(1, 4), doc="LIME: the classifier also sees n × n overlapping half-size "
        "windows of each image (n² more images; `1` = none)")
    box_threshold: float = described(0.3, range=(0.0, 1.0), doc="Grounding DINO: a query's best token probability "
        "must reach this; trained detector: score cut for labels without a fitted one (each version fits per-label "
        "cuts to the annotation time on its held-out tasks)")
    text_threshold: float = described(0.25, range=(0.0, 1.0), doc="Grounding DINO: mean token probability of the "
        "matched prompt must reach this")
    concept_threshold: float = described(0.5, range=(0.0, 1.0), doc="SAM 3: an instance is kept when its score "
        "(query score × presence score) reaches this")
    mask_threshold: float = described(0.5, range=(0.0, 1.0), doc="SAM 3: a pixel belongs to an instance's mask when "
        "its probability reaches this")
    nms_iou: float = described(0.5, range=(0.0, 1.0), doc="class-aware NMS IoU")
    max_regions: int = described(50, range=(1, 1000), doc="regions per image at most")
    polygon_tolerance: float = described(1.0, range=(0.0, 1.0), doc="polygon simplification in pixels (0–1)")
    cascade_prompt: str = described("", doc="grounded pipeline: one generic prompt (e.g. `\"road sign\"`) finds the "
        "objects, the classifier (`CLASSIFIER_MODEL`, labels mapped as for LIME) names each box crop; boxes whose "
        "best label stays under `class_threshold` are dropped")
    prompts: dict = described(factory=dict, doc="`{\"label\": [\"prompt\", …]}` overrides `prompt=`")
    classes: dict = described(factory=dict, doc="`{\"label\": [\"classifier class\", …]}` overrides "
        "`predicted_values=`")
    auto_predict: bool = described(True, doc="pre-label new tasks, and unlabelled tasks when a new trained version "
        "becomes active, in the background")
    video_frame_step: int = described(5, range=(1, 1000), doc="video tasks: the pipeline runs on every k-th frame …")
    video_max_frames: int = described(300, range=(1, 100000), doc="… on at most this many sampled frames …")
    video_max_seconds: float = described(0.0, range=(0.0, 86400.0), doc="… up to this time in the video (`0`: the "
        "whole video)")
    track_activation_threshold: float = described(0.25, range=(0.0, 1.0), doc="a detection scoring this much starts "
        "or extends a track (ByteTrack)")
    track_lost_frames: int = described(30, range=(0, 100000), doc="video frames a lost track waits for its object to "
        "reappear")
    track_matching_threshold: float = described(0.8, range=(0.0, 1.0), doc="largest matching cost `1 − IoU·score` "
        "that still links a detection to a track (lower is stricter)")
    track_min_length: int = described(2, range=(1, 1000), doc="tracks with fewer detections (sampled frames) are "
        "dropped")
    keyframe_iou: float = described(0.9, range=(0.0, 1.0), doc="keyframes: Label Studio's interpolation keeps at "
        "least this IoU with every tracked box")
    keyframe_max_gap: int = described(10, range=(1, 100000), doc="video frames without a detection after which a "
        "track's box is ended (`enabled: false`); keep it ≥ `video_frame_step`")
    carry_video_boxes: bool = described(True, doc="a video task with `VideoRectangle` boxes the annotator left open "
        "(request context, newest draft or annotation) gets them carried through the next frames instead of the "
        "pipeline's tracks (*Video*)")
    propagate_max_frames: int = described(300, range=(1, 100000), doc="carrying an annotator's video boxes: each box "
        "at most this many frames after its own last keyframe …")
    propagate_max_seconds: float = described(0.0, range=(0.0, 86400.0), doc="… and at most this many seconds of "
        "video (`0`: no limit); a `/predict` request also stops at `PREDICT_DEADLINE_S`")
    review_score: str = described("errors", choices=('errors', 'mirror', 'confidence'), doc="how each prediction's "
        "`score` is made (see *Review-priority score*): the corrections expected from the agreement with a second "
        "pass on the mirrored image (`errors`), the mean of that agreement (`mirror`), or region confidences only "
        "(no second pass)")
    task_order: str = described("uncertainty", choices=('uncertainty', 'keep'), doc="`uncertainty`: set the Label "
        "Studio project's task sampling to \"Uncertainty sampling\" once, so \"Label All Tasks\" serves the lowest "
        "score first, spread over image clusters; `keep`: never touch it (*Connect it in Label Studio*)")
    accept_threshold: float = described(0.0, range=(0.0, 1.0), doc="`0`: not set. The review page (and "
        "`/review.json`, `routing.hybrid`) states, at this prediction score, how many waiting tasks would be "
        "accepted without review and what share of such pre-labels needed a correction among the reviewed tasks (95 "
        "% interval); shown, never applied (without it: at the suggested threshold)")

    def with_overrides(self, extra: dict[str, Any] | None) -> "PredictParams":
        """A copy with the prediction keys of `extra` applied (see `ProjectParams.from_extra`)."""
        return replace(self, **_changes(extra, self, ""))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def region_dict(self) -> dict[str, Any]:
        """`as_dict` without `NOT_REGION_PARAMS`: what a pipeline's regions of one image can depend on."""
        return {k: v for k, v in asdict(self).items() if k not in NOT_REGION_PARAMS}


# Prediction parameters that cannot change the regions a pipeline finds on one image: which pipeline answers (its
# model_version says it), background pre-labelling, video sampling / tracking / keyframes / carried boxes (work on the
# frames' regions), polygon simplification (the Label Studio edge), the review score, task order and routing.
NOT_REGION_PARAMS = frozenset({
    "pipeline", "auto_predict", "polygon_tolerance", "video_frame_step", "video_max_frames", "video_max_seconds",
    "track_activation_threshold", "track_lost_frames", "track_matching_threshold", "track_min_length", "keyframe_iou",
    "keyframe_max_gap", "carry_video_boxes", "propagate_max_frames", "propagate_max_seconds", "review_score",
    "task_order", "accept_threshold"})


@dataclass(frozen=True)
class TrainParams:
    """Retraining knobs, the `train_*` keys of the extra params (each described in its field's metadata). A job
    starts after `min_new` annotation events and trains once the project has `min_annotations`; a detector trains
    for `epochs` passes or its time budget, whichever ends first, and the first versions of a project arrive while
    its annotators are still at work (`seconds_per_image`).
    """

    min_annotations: int = described(10, range=(1, 1000000), doc="annotation-triggered training runs once the "
        "project has this many annotations (Label Studio's own count, read by the job) …")
    min_new: int = described(5, range=(1, 1000000), doc="… and this many annotation events arrived since the last "
        "job (`START_TRAINING` always trains)")
    epochs: int = described(100, range=(1, 10000), doc="detector training: passes over the training images at most …")
    time_budget_s: int = described(900, range=(10, 86400), doc="… and wall-clock seconds at most (the learning-rate "
        "schedule follows whichever ends first) …")
    seconds_per_image: int = described(4, range=(0, 3600), doc="… and this many seconds per training image, at least "
        "60 (`0`: always `train_time_budget_s`)")
    warm_start: bool = described(True, doc="a new detector version starts from the active version's weights, scale "
        "and anchors")
    image_size: int = described(512, range=(64, 2048), doc="detector working scale at most: shorter image side in "
        "pixels (the recipe picks a smaller one when the boxes allow; training samples 0.75–1.25 × it)")
    augment: str = described("flip", choices=('flip', 'dihedral'), doc="`flip` (horizontal) or `dihedral` (flips and "
        "90° turns, for aerial / microscopy images)")
    tta_views: int = described(0, choices=(0, 1, 2, 4, 8), doc="views the trained detector fuses per image: `0` "
        "(the views it trained on: 2 with `flip`, 8 with `dihedral`), `1` (off), `2` (+ mirror), `4` (+ flips), `8` "
        "(+ transposes; top-down imagery; views beyond the augmentation's were never seen in training)")
    tta_scales: int = described(0, choices=(0, 1, 3), doc="scales the trained detector fuses its views at: `3` (its "
        "working scale and 0.75 and 1.25 × it, the training scales: three backbone passes, the RPN keeping 300 "
        "proposals per view and scale), `1` (the working scale, 1,000 proposals) or `0` (3 when it fuses 8 views, "
        "else 1); bf16 inference where the hardware has it. DeepForest tiles, five 300-s detectors, 8 views: held-out "
        "AP50 0.496 with `3` against 0.479 for one scale in float32 before, annotation time saved 19.0 % against "
        "17.7 %, both about 1.1 s per 400-px tile on 2 CPU cores; with 2 views (one seed) 0.493 against 0.472 but "
        "0.55 s against 0.38 s (one scale in bf16: 0.476, 0.23 s)")
    draw_seconds: float = described(7.0, range=(0, 300), doc="seconds the project's annotators take to draw one box "
        "by hand: each version's score cuts, label sources and activation minimise the annotation time of this cost "
        "model (`7`: extreme clicking, Papadopoulos et al. ICCV 2017; `25.5`: drawing corner to corner, Su et al. "
        "2012; verifying a box 1.6 s, deleting 1 s, adjusting half a drawing). Slower drawing shows more boxes. `0`: "
        "the time measured from the project's own lead times at each training (the review page's *Drawing time*), "
        "once 8 annotations state it and its 95 % interval is no wider than half of it; 7 until then")
    video_step: int = described(5, range=(1, 1000), doc="training from `videorectangle` annotations: keyframes plus "
        "every m-th frame of each annotated span")


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


def _described(key: str) -> dict[str, object]:
    """{extra-params key: `key` of its field metadata} for the params that set it."""
    out = {}
    for cls, prefix in ((PredictParams, ""), (TrainParams, TRAIN_PREFIX)):
        out.update({prefix + f.name: f.metadata[key] for f in fields(cls) if f.metadata.get(key) is not None})
    return out


RANGES: dict[str, tuple[float, float]] = _described("range")  # inclusive (low, high) of every numeric param
CHOICES: dict[str, tuple] = _described("choices")


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
