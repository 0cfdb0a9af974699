"""Pre-label acceptance: how annotators treated the prediction regions they started from.

For every task with a submitted annotation and the prediction it started from (`Task.prelabel`), regions are
matched with `backend.review.matching.match` (per control, same label first, IoU >= 0.5) and each gets one outcome:

| outcome | rule |
| --- | --- |
| accepted | prediction region kept: same label, IoU >= 0.9 |
| adjusted | same label, 0.5 <= IoU < 0.9 |
| relabelled | IoU >= 0.5 with an annotation region of another label |
| deleted | prediction region with no annotation region matched |
| added | annotation region with no prediction region matched |

Pre-label precision as judged = (accepted + adjusted) / predicted regions; recall = (accepted + adjusted) /
annotated regions; `unchanged` = accepted / predicted. Counts per label use the prediction's label for
accepted, adjusted, relabelled and deleted, the annotation's label for added (and `relabelled_to`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from backend.review.export import Prediction, Regions, Task
from backend.review.matching import MATCH_IOU, UNCHANGED_IOU, match

OUTCOMES = ("accepted", "adjusted", "relabelled", "deleted", "added")


@dataclass(frozen=True)
class Outcome:
    """What happened to one region: `prediction` / `annotation` are region indices (None when absent);
    `label` the prediction's label (the annotation's for `added`), `final_label` the annotation's (None if
    deleted); `iou` of the pair (0 when unpaired)."""

    outcome: str
    prediction: int | None
    annotation: int | None
    label: str
    final_label: str | None
    iou: float


def region_outcomes(prediction: Regions, annotation: Regions) -> list[Outcome]:
    """Every prediction and annotation region of one task with its outcome (prediction regions first, in order,
    then added annotation regions)."""
    by_prediction = {}
    matched_annotations = set()
    for pair in match(prediction, annotation, MATCH_IOU):
        if pair.same_label:
            kind = "accepted" if pair.iou >= UNCHANGED_IOU else "adjusted"
        else:
            kind = "relabelled"
        by_prediction[pair.prediction] = Outcome(kind, pair.prediction, pair.annotation, prediction.labels[pair.prediction],
                                                 annotation.labels[pair.annotation], pair.iou)
        matched_annotations.add(pair.annotation)
    out = [by_prediction.get(i, Outcome("deleted", i, None, prediction.labels[i], None, 0.0))
           for i in range(len(prediction))]
    out += [Outcome("added", None, j, annotation.labels[j], annotation.labels[j], 0.0)
            for j in range(len(annotation)) if j not in matched_annotations]
    return out


def summarise(counts: dict) -> dict:
    """Counts {predicted, annotated, accepted, adjusted, relabelled, deleted, added, ...} → the same plus
    `precision`, `recall`, `unchanged` (None where the denominator is 0), rounded to 4 digits."""
    kept = counts.get("accepted", 0) + counts.get("adjusted", 0)
    ratio = lambda num, den: round(num / den, 4) if den else None  # noqa: E731
    return {**counts, "precision": ratio(kept, counts.get("predicted", 0)),
            "recall": ratio(kept, counts.get("annotated", 0)),
            "unchanged": ratio(counts.get("accepted", 0), counts.get("predicted", 0))}


def _empty_counts() -> dict:
    return {"tasks": 0, "predicted": 0, "annotated": 0, **{k: 0 for k in OUTCOMES}}


def _add(counts: dict, outcomes: list[Outcome]) -> None:
    for o in outcomes:
        counts[o.outcome] += 1
        counts["predicted"] += o.prediction is not None
        counts["annotated"] += o.annotation is not None


def acceptance(tasks: list[Task]) -> dict:
    """Pre-label acceptance over annotated tasks that had a prediction.

    Returns {"thresholds": {"unchanged_iou", "match_iou"}, "n_tasks", "n_annotated_without_prelabel",
    "overall": counts, "by_label": {label: counts + "relabelled_to"},
    "by_model_version": [counts + "model_version", "first_prediction_at" (ISO), "mean_lead_time_s",
    "precision_change", "recall_change" (vs the previous version, None for the first)] ordered by first
    prediction time}. Every counts dict is `summarise`d."""
    overall = _empty_counts()
    by_label: dict[str, dict] = defaultdict(lambda: {**_empty_counts(), "relabelled_to": 0})
    by_version: dict[str, dict] = defaultdict(_empty_counts)
    first_seen: dict[str, object] = {}
    lead_times: dict[str, list[float]] = defaultdict(list)
    without = 0
    for task in tasks:
        annotation = task.chosen
        if annotation is None:
            continue
        prediction: Prediction | None = task.prelabel()
        if prediction is None:
            without += 1
            continue
        outcomes = region_outcomes(prediction.regions, annotation.regions)
        version = prediction.model_version
        for counts in (overall, by_version[version]):
            counts["tasks"] += 1
            _add(counts, outcomes)
        for label in {o.label for o in outcomes} | {o.final_label for o in outcomes if o.final_label}:
            by_label[label]["tasks"] += 1
        for o in outcomes:
            if o.prediction is not None:
                by_label[o.label]["predicted"] += 1
                by_label[o.label][o.outcome] += 1
            if o.annotation is not None:
                by_label[o.final_label]["annotated"] += 1
            if o.outcome == "added":
                by_label[o.label]["added"] += 1
            if o.outcome == "relabelled":
                by_label[o.final_label]["relabelled_to"] += 1
        if prediction.created_at and (version not in first_seen or prediction.created_at < first_seen[version]):
            first_seen[version] = prediction.created_at
        first_seen.setdefault(version, None)
        if annotation.lead_time_s is not None:
            lead_times[version].append(annotation.lead_time_s)
    versions = sorted(by_version, key=lambda v: (first_seen[v] is None, first_seen[v] or 0, v))
    rows, previous = [], None
    for version in versions:
        row = summarise(by_version[version])
        row.update(model_version=version,
                   first_prediction_at=first_seen[version].isoformat() if first_seen[version] else None,
                   mean_lead_time_s=round(float(np.mean(lead_times[version])), 2) if lead_times[version] else None)
        for key in ("precision", "recall"):
            both = previous is not None and row[key] is not None and previous[key] is not None
            row[f"{key}_change"] = round(row[key] - previous[key], 4) if both else None
        rows.append(row)
        previous = row
    return {"thresholds": {"unchanged_iou": UNCHANGED_IOU, "match_iou": MATCH_IOU},
            "n_tasks": overall["tasks"], "n_annotated_without_prelabel": without,
            "overall": summarise(overall),
            "by_label": {label: summarise(c) for label, c in sorted(by_label.items())},
            "by_model_version": rows}
