"""A Label Studio JSON export read once into tasks, annotations, predictions and their regions.

Regions are pixel boxes (float32 xyxy of the image as Label Studio shows it), read with
`backend.labelstudio.results.results_to_detections`: rectangles give their box, brush and polygon regions the
box around their mask. A `choices` result becomes one region per chosen value whose box is the whole image
(so the same matching code compares image-level labels). Keypoints and regions of controls the ontology does not
have are left out; a malformed region is skipped and counted (`Regions.malformed`), it never fails the review.
"""

from __future__ import annotations

import math

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from backend.core.detections import Detections
from backend.core.ontology import BOX_RESULT_TYPES, Ontology
from backend.core.sizes import Size
from backend.labelstudio.results import results_to_detections

CHOICES = "choices"


@dataclass(frozen=True)
class Regions:
    """The regions of one annotation or prediction: their boxes as the one box container, `Detections`, plus where
    each came from in Label Studio.

    Attributes:
        boxes: `Detections` of the regions: float32 (N, 4) pixel boxes (a choice covers the whole image, (0, 0, 1, 1)
            if its size is unknown), float32 (N,) scores in [0, 1] (1.0 where the result has none: annotations),
            N label values, and the image `Size` from the results' `original_*` ((0, 0) when unknown); no masks.
        controls: N control names (Label Studio `from_name`); regions of different controls never match.
        ids: N Label Studio region ids ("" where the result has none).
        kinds: N result types: "rectanglelabels", "brushlabels", "polygonlabels" or "choices".
        malformed: results that could not be read and were skipped.
    """

    boxes: Detections
    controls: tuple[str, ...]
    ids: tuple[str, ...]
    kinds: tuple[str, ...]
    malformed: int = 0

    def __post_init__(self) -> None:
        if not len(self.controls) == len(self.ids) == len(self.kinds) == len(self.boxes):
            raise ValueError("Regions: fields of different lengths")

    @classmethod
    def empty(cls) -> "Regions":
        return cls(Detections.empty(Size(0, 0)), (), (), ())

    @property
    def xyxy(self) -> np.ndarray:
        return self.boxes.xyxy

    @property
    def labels(self) -> tuple[str, ...]:
        return self.boxes.labels

    @property
    def scores(self) -> np.ndarray:
        return self.boxes.scores

    @property
    def image_size(self) -> Size:
        return self.boxes.image_size

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, index) -> "Regions":
        """Subset by boolean mask or integer indices (order follows `index`)."""
        idx = np.arange(len(self))[index]
        pick = lambda values: tuple(values[i] for i in idx)  # noqa: E731
        return Regions(self.boxes.select(idx), pick(self.controls), pick(self.ids), pick(self.kinds), self.malformed)

    @property
    def is_box(self) -> np.ndarray:
        """bool (N,): the region is a rectangle, brush or polygon region (not an image-level choice)."""
        return np.array([k != CHOICES for k in self.kinds], bool)


def read_regions(results: list[dict], control_names: set[str] | None = None) -> Regions:
    """Label Studio results → `Regions`, keeping results of `control_names` (all when None)."""
    boxes, labels, scores, controls, ids, kinds = [], [], [], [], [], []
    size, malformed = (0, 0), 0
    groups: dict[str, list[dict]] = defaultdict(list)
    choices = []
    for region in results or []:
        if not isinstance(region, dict):
            malformed += 1
            continue
        if control_names is not None and region.get("from_name") not in control_names:
            continue
        kind = str(region.get("type", "")).lower()
        if kind in BOX_RESULT_TYPES:
            groups[str(region.get("from_name", ""))].append(region)
        elif kind == CHOICES:
            choices.append(region)
    for control, group in groups.items():
        for region, dets in _read_group(group):
            if dets is None:
                malformed += 1
                continue
            if not len(dets):
                continue  # an empty brush or polygon mask
            size = size if size != (0, 0) else tuple(int(v) for v in dets.image_size)
            boxes.append(dets.xyxy[0])
            labels.append(dets.labels[0])
            scores.append(float(dets.scores[0]))
            controls.append(control)
            ids.append(str(region.get("id") or ""))
            kinds.append(str(region["type"]).lower())
    for region in choices:
        values = (region.get("value") or {}).get(CHOICES)
        if not isinstance(values, list):
            malformed += 1
            continue
        w, h = int(_number(region.get("original_width"))), int(_number(region.get("original_height")))
        size = size if size != (0, 0) or not w else (w, h)
        for value in values:
            boxes.append([0.0, 0.0, float(w or 1), float(h or 1)])
            labels.append(str(value))
            scores.append(_number(region.get("score", 1.0), 1.0))
            controls.append(str(region.get("from_name", "")))
            ids.append(str(region.get("id") or ""))
            kinds.append(CHOICES)
    if size != (0, 0):  # choices read before their image size was known cover the whole image too
        for i, kind in enumerate(kinds):
            if kind == CHOICES and boxes[i][2:] == [1.0, 1.0]:
                boxes[i] = [0.0, 0.0, float(size[0]), float(size[1])]
    return Regions(Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32), tuple(labels),
                              Size(*size)), tuple(controls), tuple(ids), tuple(kinds), malformed)


def _number(value, default: float = 0.0) -> float:
    """A finite number from an exported field, else `default` (exports may hold "abc", null, NaN)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) and abs(number) < 1e9 else default


def _read_group(group: list[dict]):
    """[(result, one-region Detections or None if malformed)]: one converter call for the whole group when it
    reads cleanly, region by region otherwise (so a bad region costs only itself)."""
    try:
        dets = results_to_detections(group)
        if len(dets) == len(group) and np.isfinite(dets.xyxy).all():
            return [(region, dets.select([i])) for i, region in enumerate(group)]
    except (ValueError, TypeError):
        pass
    out = []
    for region in group:
        try:
            dets = results_to_detections([region])
            out.append((region, dets if np.isfinite(dets.xyxy).all() else None))
        except (ValueError, TypeError):
            out.append((region, None))
    return out


def parse_time(value) -> datetime | None:
    """An ISO 8601 string from the export ('...Z' or with an offset; naive means UTC) → aware datetime, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def annotator_name(completed_by) -> str:
    """`completed_by` as exported (a user id, or a dict with `email` / `id`) → a display name."""
    if isinstance(completed_by, dict):
        return str(completed_by.get("email") or f"user {completed_by.get('id', '?')}")
    return f"user {completed_by}" if completed_by is not None else "unknown"


@dataclass(frozen=True)
class Annotation:
    """One annotation of a task. `lead_time_s` is Label Studio's time spent in seconds (None if absent)."""

    id: int | None
    annotator: str
    created_at: datetime | None
    updated_at: datetime | None
    lead_time_s: float | None
    cancelled: bool
    ground_truth: bool
    parent_prediction: int | None
    regions: Regions


@dataclass(frozen=True)
class Prediction:
    """One prediction of a task. `score` is the task-level score Label Studio stores (None if absent)."""

    id: int | None
    model_version: str
    score: float | None
    created_at: datetime | None
    regions: Regions

    @property
    def task_score(self) -> float:
        """The prediction's score, or the mean of its region scores when it has none (0 for no region)."""
        if self.score is not None:
            return float(self.score)
        return float(self.regions.scores.mean()) if len(self.regions) else 0.0


@dataclass(frozen=True)
class Task:
    """One exported task: id, image URL (first image key of the ontology found in `data`), annotations and
    predictions in export order."""

    id: int
    image: str
    annotations: tuple[Annotation, ...] = field(default_factory=tuple)
    predictions: tuple[Prediction, ...] = field(default_factory=tuple)

    @property
    def submitted(self) -> tuple[Annotation, ...]:
        return tuple(a for a in self.annotations if not a.cancelled)

    @property
    def chosen(self) -> Annotation | None:
        """The annotation that counts: not cancelled, ground truth first, then the latest updated (the rule of
        `backend.training.dataset.chosen_annotation`)."""
        candidates = sorted(self.submitted, key=lambda a: (a.ground_truth, _stamp(a.updated_at)), reverse=True)
        return candidates[0] if candidates else None

    def prelabel(self) -> Prediction | None:
        """The prediction the chosen annotation started from: its `parent_prediction` when exported, else the
        latest prediction created no later than the annotation (the latest prediction if times are missing).
        None without a chosen annotation, or when every prediction came after it."""
        annotation = self.chosen
        if annotation is None or not self.predictions:
            return None
        if annotation.parent_prediction is not None:
            for prediction in self.predictions:
                if prediction.id == annotation.parent_prediction:
                    return prediction
        if annotation.created_at is None or any(p.created_at is None for p in self.predictions):
            return self.predictions[-1]
        before = [p for p in self.predictions if p.created_at <= annotation.created_at]
        return max(before, key=lambda p: p.created_at) if before else None


def _stamp(value: datetime | None) -> float:
    return value.timestamp() if value else float("-inf")


def read_export(tasks: list[dict], ontology: Ontology, skipped: list[dict] | None = None) -> list[Task]:
    """Exported tasks → `Task`s with the regions of the ontology's controls only. A task that cannot be read (no
    id, fields of the wrong type) is left out and, with `skipped`, listed there as {"task", "reason"}."""
    out = []
    for task in tasks:
        try:
            out.append(_read_task(task, {c.name for c in ontology.controls}, ontology.image_keys))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if skipped is not None:
                task_id = task.get("id") if isinstance(task, dict) else None
                skipped.append({"task": task_id if isinstance(task_id, int) else None,
                                "reason": f"{type(exc).__name__}: {exc}"[:300]})
    return out


def _read_task(task: dict, names: set[str], keys: tuple[str, ...]) -> Task:
    """One exported task (raises on fields it cannot read)."""
    data = task.get("data") or {}
    image = next((str(data[k]) for k in keys if data.get(k)), "")
    annotations = tuple(
        Annotation(a.get("id"), annotator_name(a.get("completed_by")), parse_time(a.get("created_at")),
                   parse_time(a.get("updated_at")) or parse_time(a.get("created_at")),
                   float(a["lead_time"]) if isinstance(a.get("lead_time"), (int, float)) else None,
                   bool(a.get("was_cancelled")), bool(a.get("ground_truth")), a.get("parent_prediction"),
                   read_regions(a.get("result") or [], names))
        for a in task.get("annotations") or [] if isinstance(a, dict))
    predictions = tuple(
        Prediction(p.get("id"), str(p.get("model_version") or "unknown"),
                   float(p["score"]) if isinstance(p.get("score"), (int, float)) else None,
                   parse_time(p.get("created_at")), read_regions(p.get("result") or [], names))
        for p in task.get("predictions") or [] if isinstance(p, dict))
    return Task(int(task["id"]), image, annotations, predictions)
