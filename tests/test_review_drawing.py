"""The drawing time a project's lead times show (`backend.review.drawing`): the box work of one annotation against
its pre-label, and the robust slope over a project's annotations, beside its `train_draw_seconds`."""

import numpy as np
import pytest

from backend.review.drawing import MEASURED, MIN_ANNOTATIONS, box_work, drawing_time, usable_seconds
from backend.review.export import read_export
from tests.review_fixtures import BRUSH, ONTOLOGY, prediction, regions, task

A, B, C = [10, 10, 60, 60], [100, 100, 160, 150], [200, 50, 260, 120]
SHIFTED = [10, 10, 60, 75]  # IoU 0.77 with A: accepted as the cost model matches (IoU >= 0.7)
STRETCHED = [10, 10, 60, 100]  # IoU 0.56 with A: adjusted


def _one(annotation, predictions=(), lead_time=30.0):
    (parsed,) = read_export([task(1, annotation, predictions, lead_time=lead_time)], ONTOLOGY)
    return parsed


@pytest.mark.parametrize("annotation,predictions,lead_time,expected", [
    (regions([A, B, C], ["cat"] * 3), (), 30.0, (3.0, 0.0)),  # no pre-label: every box drawn
    (regions([A, B], ["cat"] * 2), [prediction(regions([A, C], ["cat"] * 2))], 30.0, (1.0, 4.2)),  # A kept, C
    # deleted (1.6 + 1.6 + 1.0), B drawn
    (regions([SHIFTED], ["cat"]), [prediction(regions([A], ["cat"]))], 30.0, (0.0, 1.6)),  # accepted: verified
    (regions([STRETCHED], ["cat"]), [prediction(regions([A], ["cat"]))], 30.0, (0.5, 1.6)),  # adjusted: half a box
    (regions([STRETCHED], ["dog"]), [prediction(regions([A], ["cat"]))], 30.0, (0.5, 3.2)),  # adjusted, relabelled
    (regions([A], ["dog"]), [prediction(regions([A], ["cat"]))], 30.0, (0.0, 3.2)),  # relabelled
    (regions([A], ["cat"]), (), None, None),  # no lead time recorded
    (regions([A], ["cat"]), (), 0.0, None),
    (regions([A, B], ["cat"] * 2, controls=(BRUSH,)), (), 30.0, (0.0, 0.0)),  # brush strokes are not box drawing
])
def test_box_work(annotation, predictions, lead_time, expected):
    work = box_work(_one(annotation, predictions, lead_time))
    assert work == (None if expected is None else pytest.approx(expected))


def _project(draw_s, n=24, per_task_s=5.0, idle=(), seed=0):
    """`n` annotations drawn by hand at `draw_s` a box plus `per_task_s`; those in `idle` left open 10 minutes; every
    third one started from a pre-label with one box accepted and one deleted."""
    rng = np.random.default_rng(seed)
    tasks = []
    boxes = [A, B, C, [300, 200, 350, 260], [20, 200, 80, 280], [150, 10, 190, 40]]
    for i in range(n):
        k = int(rng.integers(0, 7))
        if i % 3 == 0 and k:
            shown = [prediction(regions([boxes[0], [380, 280, 395, 295]], ["cat"] * 2))]
            lead = per_task_s + 1.6 * 2 + 1.0 + draw_s * (k - 1)
        else:
            shown, lead = [], per_task_s + draw_s * k
        lead += 600.0 * (i in idle) + rng.normal(0, 1.0)
        tasks.append(task(i + 1, regions(boxes[:k], ["cat"] * k), shown, lead_time=max(lead, 0.5)))
    return read_export(tasks, ONTOLOGY)


@pytest.mark.parametrize("draw_s,configured,outside", [
    (7.0, 7.0, False),  # fast drawing, as the default assumes
    (25.5, 7.0, True),  # traditional drawing: the default is outside the interval
    (25.5, 25.5, False),
])
def test_drawing_time_is_the_robust_slope(draw_s, configured, outside):
    out = drawing_time(_project(draw_s, idle=(4, 11, 17)), configured)  # 3 of 24 left open for minutes
    assert out["reason"] is None and out["n_annotations"] == 24
    assert out["seconds_per_box"] == pytest.approx(draw_s, abs=1.5) and out["low"] <= draw_s <= out["high"]
    assert out["per_task_s"] == pytest.approx(5.0, abs=4.0)
    assert out["configured_s"] == configured and out["outside"] is outside


@pytest.mark.parametrize("tasks,reason", [
    (lambda: _project(7.0, n=MIN_ANNOTATIONS - 1), "needs 8"),
    (lambda: read_export([task(i, regions([A], ["cat"]), lead_time=9.0 + i) for i in range(1, 12)], ONTOLOGY),
     "as many boxes"),
    (lambda: read_export([task(i, regions([A, B, C][:i % 3 + 1], ["cat"] * (i % 3 + 1)), lead_time=40.0 - 9 * (i % 3))
                          for i in range(1, 12)], ONTOLOGY), "do not grow"),
])
def test_no_drawing_time_without_evidence(tasks, reason):
    out = drawing_time(tasks(), 7.0)
    assert out["seconds_per_box"] is None and reason in out["reason"] and out["outside"] is False


STATED = {"seconds_per_box": 20.0, "low": 16.0, "high": 25.0}


@pytest.mark.parametrize("measured,usable", [
    (STATED, 20.0),  # interval 9 s wide, under half of 20
    ({**STATED, "high": 26.1}, None),  # 10.1 s wide: too uncertain to set a cost model
    ({**STATED, "low": 20.0, "high": 20.0}, 20.0),
    ({"seconds_per_box": 0.4, "low": 0.35, "high": 0.45}, 1.0),  # clipped to the setting's range
    ({"seconds_per_box": 400.0, "low": 390.0, "high": 410.0}, 300.0),
    ({"seconds_per_box": None, "low": None, "high": None}, None),  # not measured
])
def test_usable_seconds(measured, usable):
    assert usable_seconds(measured) == usable


@pytest.mark.parametrize("tasks,configured,applied,source", [
    (lambda: _project(25.5, idle=(4, 11, 17)), MEASURED, 25.5, "measured"),  # train_draw_seconds 0 follows it
    (lambda: _project(25.5, idle=(4, 11, 17)), 7.0, 7.0, "configured"),  # a number set is kept (and named outside)
    (lambda: _project(25.5, n=MIN_ANNOTATIONS - 1), MEASURED, 7.0, "default"),  # too few: the default's 7 s
    (lambda: _project(25.5), None, None, None),
])
def test_the_seconds_a_version_is_fitted_for(tasks, configured, applied, source):
    out = drawing_time(tasks(), configured)
    assert out["applied_s"] == (None if applied is None else pytest.approx(applied, abs=1.5))
    assert out["applied_from"] == source
    assert out["outside"] is (configured == 7.0)  # 0 asks for the measurement: never "outside" it
