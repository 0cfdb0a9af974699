"""Per-project prediction parameters: defaults, overridden by the ML connection's `extra_params`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from backend.core.errors import BadRequest


ENUMS = {"train_augment": ("flip", "dihedral"), "train_tta_views": (1, 2, 4, 8)}


@dataclass(frozen=True)
class PredictParams:
    """Knobs a project admin may set in Label Studio's "Extra params" JSON.

    Thresholds are in [0, 1]; `box_threshold` is also the score cut of a project's trained detector.
    `train_*` shape detector retraining: epochs and a wall-clock budget (whichever ends first), the
    shorter image side the detector sees, and `train_augment` "flip" (horizontal flips) or "dihedral"
    (flips and 90-degree turns, for top-down imagery); `train_tta_views` dihedral views of each image the
    trained detector predicts on and fuses (1 = off; 2, 4, 8 cost that many passes). `cascade_prompt`
    (grounded pipeline): one generic prompt finds the objects and the classifier names each box (labels mapped
    as for LIME). `prompts` maps a label value to its text prompts and `classes` a label value to classifier
    class names; both override what the label config says. LIME (`backend.pipelines.lime_objects`): an object
    is a group of touching superpixels seeded by one with weight >= `lime_min_component` x the label's top weight
    and grown over those >= `lime_min_weight` x the top weight (at most `lime_max_superpixels` per object); it is
    kept when its label's probability in the best view showing it reaches `class_threshold`; `lime_windows` per
    side: the classifier also sees lime_windows^2 overlapping half-size windows of the image (1 = none).
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
    train_min_annotations: int = 10
    train_min_new: int = 5
    train_epochs: int = 40
    train_time_budget_s: int = 900
    train_image_size: int = 512
    train_augment: str = "flip"
    train_tta_views: int = 1
    cascade_prompt: str = ""
    prompts: dict = field(default_factory=dict)
    classes: dict = field(default_factory=dict)
    lime_windows: int = 3

    def with_overrides(self, extra: dict[str, Any] | None) -> "PredictParams":
        """Return a copy with `extra` applied; unknown keys or wrong types raise `BadRequest`."""
        if not extra:
            return self
        if not isinstance(extra, dict):
            raise BadRequest("extra_params must be a JSON object")
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in extra.items():
            if key not in known:
                raise BadRequest(f"extra_params: unknown key {key!r}; known keys: {sorted(known)}")
            default = getattr(self, key)
            changes[key] = _coerce(key, value, default)
            if key in ENUMS and changes[key] not in ENUMS[key]:
                raise BadRequest(f"extra_params.{key} must be one of {ENUMS[key]}, got {value!r}")
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _coerce(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, dict):
        if not isinstance(value, dict) or not all(
            isinstance(v, (str, list)) for v in value.values()
        ):
            raise BadRequest(f"extra_params.{key} must map label values to a string or a list of strings")
        return {str(k): tuple([v] if isinstance(v, str) else map(str, v)) for k, v in value.items()}
    if isinstance(default, bool) or isinstance(default, str):
        if not isinstance(value, str):
            raise BadRequest(f"extra_params.{key} must be a string")
        return value
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        if not numeric or int(value) != value or value < 1:
            raise BadRequest(f"extra_params.{key} must be a positive integer")
        return int(value)
    if isinstance(default, float):
        if not numeric or not 0.0 <= float(value) <= 1.0:
            raise BadRequest(f"extra_params.{key} must be between 0 and 1")
        return float(value)
    raise BadRequest(f"extra_params.{key} has an unsupported type")
