"""Routing curve: which prediction score is safe to auto-accept.

For every task with a submitted annotation and the prediction it started from (`Task.prelabel`), the task's
prediction score (`Prediction.task_score`: the score Label Studio stores, i.e. the mean region score our backend
writes) is compared with how well the prediction agreed with the annotation:
- `f1`: region F1 at IoU >= 0.5 with the same label (2 kept / (predicted + annotated); 1 when both are empty);
- `unchanged`: every predicted region accepted (same label, IoU >= 0.9) and nothing added.
For each threshold t: the share of tasks with score >= t and the mean f1 / share unchanged among them; if those
were auto-accepted and the rest labelled by hand (taken as perfect), the project's expected F1 is
`share_above * f1_above + (1 - share_above)`. An admin filters Label Studio's Data Manager by prediction score >= t
and runs "Create Annotations From Predictions" on those tasks. (The Data Manager's score is the mean over a task's
predictions: with several model versions per task, filter by model version too.)
"""

from __future__ import annotations

import numpy as np

from backend.review.acceptance import region_outcomes
from backend.review.export import Task

THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.0, 1.0001, 0.05))
TARGET_F1 = 0.95
MIN_TASKS_ABOVE = 10


def task_agreement(tasks: list[Task]) -> list[dict]:
    """[{"task_id", "score", "f1", "unchanged", "model_version"}] for tasks with a submitted annotation and a
    pre-label."""
    out = []
    for task in tasks:
        annotation, prediction = task.chosen, task.prelabel()
        if annotation is None or prediction is None:
            continue
        outcomes = region_outcomes(prediction.regions, annotation.regions)
        kept = sum(o.outcome in ("accepted", "adjusted") for o in outcomes)
        n_pred, n_ann = len(prediction.regions), len(annotation.regions)
        f1 = 1.0 if n_pred + n_ann == 0 else 2 * kept / (n_pred + n_ann)
        unchanged = all(o.outcome == "accepted" for o in outcomes)
        out.append({"task_id": task.id, "score": round(prediction.task_score, 4), "f1": round(f1, 4),
                    "unchanged": unchanged, "model_version": prediction.model_version})
    return out


def routing_curve(tasks: list[Task], thresholds: tuple[float, ...] = THRESHOLDS, target_f1: float = TARGET_F1,
                  rows: list[dict] | None = None) -> dict:
    """Returns {"n_tasks", "target_f1", "suggested_threshold" (the lowest t with f1_above >= target_f1 over at
    least 10 tasks, None if none), "points": [{"threshold", "tasks_above", "share_above", "f1_above",
    "unchanged_above", "expected_f1"}] (f1_above / unchanged_above None when no task is above)}. rows: the tasks'
    `task_agreement`, when the caller has it already."""
    rows = task_agreement(tasks) if rows is None else rows
    scores = np.array([r["score"] for r in rows], float)
    f1 = np.array([r["f1"] for r in rows], float)
    unchanged = np.array([r["unchanged"] for r in rows], float)
    points, suggested = [], None
    for t in thresholds:
        above = scores >= t - 1e-9
        n = int(above.sum())
        share = n / len(rows) if rows else 0.0
        f1_above = float(f1[above].mean()) if n else None
        point = {"threshold": float(t), "tasks_above": n, "share_above": round(share, 4),
                 "f1_above": None if f1_above is None else round(f1_above, 4),
                 "unchanged_above": round(float(unchanged[above].mean()), 4) if n else None,
                 "expected_f1": round(share * f1_above + (1 - share), 4) if n else 1.0}
        points.append(point)
        if suggested is None and n >= MIN_TASKS_ABOVE and f1_above >= target_f1:
            suggested = float(t)
    return {"n_tasks": len(rows), "target_f1": target_f1, "suggested_threshold": suggested, "points": points}


WILSON_Z = 1.96  # 95 % interval


def wilson_interval(k: int, n: int, z: float = WILSON_Z) -> tuple[float, float]:
    """Wilson score interval (low, high) in [0, 1] of a share k / n; (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def hybrid_routing(tasks: list[Task], accept_threshold: float | None = None,
                   thresholds: tuple[float, ...] = THRESHOLDS, suggested: float | None = None,
                   shown_version: str | None = None, rows: list[dict] | None = None) -> dict:
    """Hybrid routing stated, never applied: for each threshold t, how many of the tasks still waiting (no submitted
    annotation, a prediction) would be accepted without review (the score of their prediction of `shown_version`,
    the project's model_version whose scores the Data Manager filters on; their latest prediction's when None, and
    tasks without a prediction of it are not waiting for this) and, from the reviewed tasks whose pre-label scored
    >= t, the share that needed a correction (not `unchanged`), with its 95 % Wilson interval; and the same at the
    project's `accept_threshold` (or `suggested` when the project set none).

    Returns {"accept_threshold", "threshold_from" ("project", "suggested" or None), "waiting_tasks",
    "reviewed_tasks", "points": [{"threshold", "waiting_above", "share_waiting_above", "reviewed_above",
    "corrected_above", "needs_correction", "needs_correction_low", "needs_correction_high"}], "at_threshold" (the
    point at the threshold, None without one), "statement" (one sentence for people, None without a threshold)}.
    `needs_correction` is None with no reviewed task above. rows: the tasks' `task_agreement`, when the caller has
    it already."""
    rows = task_agreement(tasks) if rows is None else rows
    scores = np.array([r["score"] for r in rows], float)
    corrected = np.array([not r["unchanged"] for r in rows], bool)
    waiting = np.array([p.task_score for p in (_shown(t, shown_version) for t in tasks if t.chosen is None)
                        if p is not None], float)
    chosen, source = ((accept_threshold, "project") if accept_threshold is not None else
                      (suggested, "suggested") if suggested is not None else (None, None))
    points = [_hybrid_point(t, scores, corrected, waiting) for t in thresholds]
    at = None if chosen is None else _hybrid_point(chosen, scores, corrected, waiting)
    return {"accept_threshold": chosen, "threshold_from": source, "waiting_tasks": int(waiting.size),
            "reviewed_tasks": len(rows), "points": points, "at_threshold": at,
            "statement": None if at is None else _statement(at, source, waiting.size)}


def _shown(task: Task, version: str | None):
    """The task's prediction the Data Manager shows: its latest of `version` (its latest at all when None)."""
    chosen = [p for p in task.predictions if version is None or p.model_version == version]
    return chosen[-1] if chosen else None


def _hybrid_point(t: float, scores: np.ndarray, corrected: np.ndarray, waiting: np.ndarray) -> dict:
    above = scores >= t - 1e-9
    n, k = int(above.sum()), int(corrected[above].sum())
    low, high = wilson_interval(k, n)
    n_waiting = int((waiting >= t - 1e-9).sum())
    return {"threshold": round(float(t), 4), "waiting_above": n_waiting,
            "share_waiting_above": round(n_waiting / waiting.size, 4) if waiting.size else 0.0,
            "reviewed_above": n, "corrected_above": k, "needs_correction": round(k / n, 4) if n else None,
            "needs_correction_low": round(low, 4), "needs_correction_high": round(high, 4)}


def _statement(at: dict, source: str, n_waiting: int) -> str:
    which = "the project's accept_threshold" if source == "project" else "the suggested threshold"
    accepted = (f"At {which} {at['threshold']:g}, {at['waiting_above']} of the {n_waiting} tasks waiting "
                f"({at['share_waiting_above']:.0%}) would be accepted without review")
    apply = ("Nothing is accepted automatically: filter the Data Manager by prediction score and run \"Create "
             "Annotations From Predictions\" to apply it.")
    if at["needs_correction"] is None:
        return (accepted + "; no reviewed task scored this high yet, so how many of them need a correction is "
                f"unknown. {apply}")
    return (accepted + f"; of the {at['reviewed_above']} reviewed tasks that scored this high, "
            f"{at['needs_correction']:.0%} needed a correction (95 % interval {at['needs_correction_low']:.0%}"
            f"–{at['needs_correction_high']:.0%}). {apply}")
