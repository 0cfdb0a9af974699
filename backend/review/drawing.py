"""How long the project's annotators take to draw one box, measured from the time Label Studio records for each
annotation (`lead_time`), so that a project can state its own drawing speed (`train_draw_seconds`, the cost model
each detector version's score cuts and sources minimise: `backend.core.effort`) instead of the default's 7 s.

Per submitted annotation with a lead time, its rectangles are matched to those of the pre-label it started from
(`Task.prelabel`) as the cost model matches them (`backend.core.effort.actions`: accepted at IoU >= 0.7, adjusted
from 0.3): `x` = boxes drawn + half the boxes adjusted (adjusting costs half a drawing), and the lead time less the
fixed costs of the other actions (verifying each shown box, deleting, relabelling: the model's published times) is
`y`. An annotation without a pre-label drew every box. The drawing time is the Theil–Sen slope of `y` on `x` (robust
to the idle minutes a lead time can hold), its 95 % interval Sen's; the median residual is what a task costs besides
its boxes (opening, submitting). Brush and polygon regions are left out: their drawing is not a box's.

A project that sets `train_draw_seconds` 0 has its versions' cuts fitted for this measured time once it is usable
(`usable_seconds`: stated, and Sen's interval no wider than `MAX_RELATIVE_WIDTH` of it), and for the default's 7 s
before.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import theilslopes

from backend.core.effort import FAST, actions, seconds
from backend.review.export import Regions, Task

MIN_ANNOTATIONS = 8  # annotations with a lead time before a drawing time is stated
MAX_RELATIVE_WIDTH = 0.5  # a measured time is applied (`train_draw_seconds` 0) when its 95 % interval is this narrow
MEASURED = 0  # the `train_draw_seconds` that asks for the measured time
BOX = "rectanglelabels"


def _boxes(regions: Regions) -> tuple[np.ndarray, list[str]]:
    keep = [i for i, kind in enumerate(regions.kinds) if kind == BOX]
    return np.asarray(regions.boxes.xyxy, float).reshape(-1, 4)[keep], [regions.boxes.labels[i] for i in keep]


def box_work(task: Task) -> tuple[float, float] | None:
    """(x: boxes drawn + half the boxes adjusted, fixed seconds of verifying, deleting and relabelling) of the task's
    chosen annotation against its pre-label; None without a chosen annotation or a positive lead time."""
    annotation = task.chosen
    if annotation is None or not annotation.lead_time_s or annotation.lead_time_s <= 0:
        return None
    prediction = task.prelabel()
    true_boxes, true_labels = _boxes(annotation.regions)
    shown_boxes, shown_labels = _boxes(prediction.regions) if prediction is not None else (np.zeros((0, 4)), [])
    counts = actions(shown_boxes, shown_labels, true_boxes, true_labels)
    x = counts["draw"] + 0.5 * (counts["adjust"] + counts["adjust_relabel"])  # in drawings (an adjust is half one)
    fixed = seconds(counts, FAST) - FAST.draw * x  # the cost model's seconds less its drawing: the same in any model
    return float(x), round(float(fixed), 6)


def drawing_time(tasks: list[Task], configured_s: float | None = None) -> dict:
    """{"seconds_per_box", "low", "high" (95 %), "per_task_s" (the intercept), "n_annotations", "configured_s",
    "outside": whether `configured_s` (the project's `train_draw_seconds`) lies outside the interval, "applied_s":
    the seconds the next version's cuts are fitted for: `configured_s`, or with `MEASURED` (0) the usable measured
    time (`usable_seconds`) and the default's (`FAST`, 7 s) until there is one, "applied_from": "configured" (a
    number set), "measured" or "default" (0 set; None when nothing is configured), "reason" (why no figure: None when
    there is one)}. Seconds are rounded to 0.1."""
    out = _measure(tasks, configured_s)
    if configured_s != MEASURED:
        return out | {"applied_s": configured_s, "applied_from": None if configured_s is None else "configured"}
    usable = usable_seconds(out)
    return out | ({"applied_s": usable, "applied_from": "measured"} if usable is not None else
                  {"applied_s": FAST.draw, "applied_from": "default"})


def _measure(tasks: list[Task], configured_s: float | None) -> dict:
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
    with np.errstate(invalid="ignore"):  # Sen's interval of tied lead times: NaN, answered below
        slope, _, low, high = theilslopes(y, x, 0.95)
    if not slope > 0 or not np.isfinite([slope, low, high]).all():
        return out | {"reason": "lead times do not grow with the boxes drawn"}
    out |= {"seconds_per_box": round(float(slope), 1), "low": round(float(low), 1), "high": round(float(high), 1),
            "per_task_s": round(float(np.median(y - slope * x)), 1)}  # the median residual: robust to idle minutes
    out["outside"] = configured_s not in (None, MEASURED) and not low <= configured_s <= high
    return out


def usable_seconds(measured: dict) -> float | None:
    """The seconds per box of a `drawing_time` result when they can set a cost model: stated, and its 95 % interval
    (high − low) no wider than `MAX_RELATIVE_WIDTH` of it; clipped to `train_draw_seconds`' range (1–300 s). None
    otherwise."""
    seconds = measured.get("seconds_per_box")
    if seconds is None or measured["high"] - measured["low"] > MAX_RELATIVE_WIDTH * seconds:
        return None
    return float(min(300.0, max(1.0, seconds)))
