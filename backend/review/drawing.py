"""How long the project's annotators take to draw one box, measured from the time Label Studio records for each
annotation (`lead_time`), so that a project can state its own drawing speed (`train_draw_seconds`, the cost model
each detector version's score cuts and sources minimise: `backend.training.effort`) instead of the default's 7 s.

Per submitted annotation with a lead time, its rectangle work is counted against the pre-label it started from
(`Task.prelabel`, outcomes of `backend.review.acceptance.region_outcomes`): `x` = boxes drawn + half the boxes
adjusted (adjusting costs half a drawing in the cost model), and the lead time less the fixed costs of the other
actions (verifying each shown box 1.6 s, deleting 1 s, relabelling 1.6 s) is `y`. An annotation without a
pre-label drew every box. The drawing time is the Theil–Sen slope of `y` on `x` (robust to the idle minutes a lead
time can hold), its 95 % interval Sen's; the intercept is what a task costs besides its boxes (opening,
submitting). Brush and polygon regions are left out: their drawing is not a box's.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import theilslopes

from backend.review.acceptance import region_outcomes
from backend.review.export import Task

MIN_ANNOTATIONS = 8  # annotations with a lead time before a drawing time is stated
BOX = "rectanglelabels"
VERIFY_S, DELETE_S, RELABEL_S = 1.6, 1.0, 1.6  # the cost model's fixed times (backend.training.effort)


def box_work(task: Task) -> tuple[float, float] | None:
    """(x: boxes drawn + half the boxes adjusted, fixed seconds of the other actions) of the task's chosen
    annotation against its pre-label; None without a chosen annotation or a positive lead time."""
    annotation = task.chosen
    if annotation is None or not annotation.lead_time_s or annotation.lead_time_s <= 0:
        return None
    prediction = task.prelabel()
    if prediction is None:
        return float(sum(kind == BOX for kind in annotation.regions.kinds)), 0.0
    x = fixed = 0.0
    for o in region_outcomes(prediction.regions, annotation.regions):
        kind = prediction.regions.kinds[o.prediction] if o.prediction is not None else \
            annotation.regions.kinds[o.annotation]
        if kind != BOX:
            continue
        fixed += VERIFY_S if o.prediction is not None else 0.0
        x += {"added": 1.0, "adjusted": 0.5}.get(o.outcome, 0.0)
        fixed += {"deleted": DELETE_S, "relabelled": RELABEL_S}.get(o.outcome, 0.0)
    return x, fixed


def drawing_time(tasks: list[Task], configured_s: float | None = None) -> dict:
    """{"seconds_per_box", "low", "high" (95 %), "per_task_s" (the intercept), "n_annotations", "configured_s",
    "outside": whether `configured_s` (the project's `train_draw_seconds`) lies outside the interval, "reason"
    (why no figure: None when there is one)}. Seconds are rounded to 0.1."""
    rows = [(w[0], t.chosen.lead_time_s - w[1]) for t in tasks if (w := box_work(t)) is not None]
    out = {"seconds_per_box": None, "low": None, "high": None, "per_task_s": None, "n_annotations": len(rows),
           "configured_s": configured_s, "outside": False, "reason": None}
    x = np.array([r[0] for r in rows], float)
    y = np.array([r[1] for r in rows], float)
    if len(rows) < MIN_ANNOTATIONS:
        return out | {"reason": f"{len(rows)} annotations with a lead time; a drawing time needs {MIN_ANNOTATIONS}"}
    if np.unique(x).size < 2:
        return out | {"reason": "every annotation drew as many boxes: the time per box cannot be told from the "
                                "time per task"}
    slope, _, low, high = theilslopes(y, x, 0.95)
    if not slope > 0 or not np.isfinite([slope, low, high]).all():
        return out | {"reason": "lead times do not grow with the boxes drawn"}
    out |= {"seconds_per_box": round(float(slope), 1), "low": round(float(low), 1), "high": round(float(high), 1),
            "per_task_s": round(float(np.median(y - slope * x)), 1)}  # the median residual: robust to idle minutes
    out["outside"] = configured_s is not None and not low <= configured_s <= high
    return out
