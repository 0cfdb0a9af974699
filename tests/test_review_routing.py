"""Routing curve: share of tasks above a prediction score and their agreement with the annotations."""

import pytest

from backend.review.export import read_export
from backend.review.routing import routing_curve, task_agreement
from tests.review_fixtures import ONTOLOGY, prediction, regions, task

A, B = [10, 10, 110, 110], [200, 50, 300, 150]
AGREEMENT = [
    # name, predicted (boxes, labels), annotated (boxes, labels), f1, unchanged
    ("kept unchanged", ([A, B], ["cat", "dog"]), ([A, B], ["cat", "dog"]), 1.0, True),
    ("one adjusted", ([A, B], ["cat", "dog"]), ([A, [220, 50, 320, 150]], ["cat", "dog"]), 1.0, False),
    ("one relabelled", ([A, B], ["cat", "dog"]), ([A, B], ["cat", "cat"]), 0.5, False),
    ("one deleted", ([A, B], ["cat", "dog"]), ([A], ["cat"]), 2 / 3, False),
    ("one added", ([A], ["cat"]), ([A, B], ["cat", "dog"]), 2 / 3, False),
    ("both empty", ([], []), ([], []), 1.0, True),
]


@pytest.mark.parametrize("name,predicted,annotated,f1,unchanged", AGREEMENT, ids=[c[0] for c in AGREEMENT])
def test_task_agreement(name, predicted, annotated, f1, unchanged):
    (row,) = task_agreement(read_export([task(1, regions(*annotated), [prediction(regions(*predicted), score=0.7)])],
                                        ONTOLOGY))
    assert row["f1"] == pytest.approx(f1, abs=1e-4) and row["unchanged"] is unchanged and row["score"] == 0.7


def test_curve_and_suggested_threshold():
    tasks = []
    for i in range(20):  # confident predictions, kept as they were
        tasks.append(task(i + 1, regions([A], ["cat"]), [prediction(regions([A], ["cat"]), score=0.9)]))
    for i in range(20):  # unsure predictions, half of them wrong
        ann = regions([A], ["cat" if i % 2 else "dog"])
        tasks.append(task(100 + i, ann, [prediction(regions([A], ["cat"]), score=0.4)]))
    tasks.append(task(500, None, [prediction(regions([A], ["cat"]), score=0.9)]))  # not annotated: left out
    curve = routing_curve(read_export(tasks, ONTOLOGY))
    assert curve["n_tasks"] == 40
    points = {p["threshold"]: p for p in curve["points"]}
    assert (points[0.0]["share_above"], points[0.0]["f1_above"]) == (1.0, 0.75)
    assert (points[0.5]["share_above"], points[0.5]["f1_above"], points[0.5]["unchanged_above"]) == (0.5, 1.0, 1.0)
    assert points[0.5]["expected_f1"] == 1.0 and points[0.0]["expected_f1"] == 0.75
    assert points[0.95]["tasks_above"] == 0 and points[0.95]["f1_above"] is None
    assert curve["suggested_threshold"] == 0.45
    shares = [p["share_above"] for p in curve["points"]]
    assert shares == sorted(shares, reverse=True)


WILSON = [
    # (k, n, low, high): the 95 % Wilson interval
    (0, 0, 0.0, 1.0),
    (0, 10, 0.0, 0.2775),
    (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0),
    (1, 20, 0.0089, 0.2361),
]


@pytest.mark.parametrize("k,n,low,high", WILSON)
def test_wilson_interval(k, n, low, high):
    from backend.review.routing import wilson_interval

    assert wilson_interval(k, n) == pytest.approx((low, high), abs=1e-4)


def _hybrid_project():
    tasks = []
    for i in range(20):  # reviewed, confident and kept
        tasks.append(task(i + 1, regions([A], ["cat"]), [prediction(regions([A], ["cat"]), score=0.9)]))
    for i in range(20):  # reviewed, unsure, half corrected
        tasks.append(task(100 + i, regions([A], ["cat" if i % 2 else "dog"]),
                          [prediction(regions([A], ["cat"]), score=0.4)]))
    tasks.append(task(200, regions([A], ["dog"]), [prediction(regions([A], ["cat"]), score=0.95)]))  # a confident miss
    for i, score in enumerate([0.97, 0.92, 0.8, 0.5, 0.3, 0.1]):  # waiting for an annotator
        tasks.append(task(300 + i, None, [prediction(regions([A], ["cat"]), score=score)]))
    tasks.append(task(400, None, []))  # no prediction: not routed
    return read_export(tasks, ONTOLOGY)


HYBRID = [
    # (case, accept_threshold, suggested, threshold_from, waiting_above, reviewed_above, corrected_above)
    ("the project's threshold", 0.85, 0.45, "project", 2, 21, 1),
    ("none set: the suggested one", None, 0.45, "suggested", 4, 21, 1),
    ("none set, none suggested", None, None, None, None, None, None),
    ("above every reviewed task", 0.96, None, "project", 1, 0, 0),
]


@pytest.mark.parametrize("case,threshold,suggested,source,waiting,reviewed,corrected", HYBRID,
                         ids=[c[0] for c in HYBRID])
def test_hybrid_routing(case, threshold, suggested, source, waiting, reviewed, corrected):
    from backend.review.routing import hybrid_routing, wilson_interval

    out = hybrid_routing(_hybrid_project(), threshold, suggested=suggested)
    assert (out["waiting_tasks"], out["reviewed_tasks"], out["threshold_from"]) == (6, 41, source)
    at = out["at_threshold"]
    if source is None:
        assert at is None and out["statement"] is None
        return
    assert (at["waiting_above"], at["reviewed_above"], at["corrected_above"]) == (waiting, reviewed, corrected)
    assert at["share_waiting_above"] == round(waiting / 6, 4)
    if reviewed:
        assert at["needs_correction"] == round(corrected / reviewed, 4)
        assert (at["needs_correction_low"], at["needs_correction_high"]) == pytest.approx(
            wilson_interval(corrected, reviewed), abs=1e-4)
        assert f"{waiting} of the 6 tasks waiting" in out["statement"]
        assert "Nothing is accepted automatically" in out["statement"]
    else:
        assert at["needs_correction"] is None and "unknown" in out["statement"]
        assert "Nothing is accepted automatically" in out["statement"]
    shares = [p["share_waiting_above"] for p in out["points"]]
    assert shares == sorted(shares, reverse=True) and out["points"][0]["waiting_above"] == 6


def test_accept_threshold_is_a_project_param():
    from backend.core.errors import BadRequest
    from backend.core.params import ProjectParams

    assert ProjectParams.from_extra({}).predict.accept_threshold == 0.0  # not set
    assert ProjectParams.from_extra({"accept_threshold": 0.85}).predict.accept_threshold == 0.85
    with pytest.raises(BadRequest, match="accept_threshold"):
        ProjectParams.from_extra({"accept_threshold": 1.5})


def test_hybrid_routing_reads_the_shown_version():
    """Waiting tasks are counted by the score the Data Manager filters on: their prediction of the project's
    model_version; a task with only another version's prediction is not accepted by that filter."""
    from backend.review.routing import hybrid_routing

    tasks = read_export([
        task(1, None, [prediction(regions([A], ["cat"]), version="v2", score=0.9),
                       prediction(regions([A], ["cat"]), version="v1", score=0.2)]),  # v1 came last in the export
        task(2, None, [prediction(regions([A], ["cat"]), version="v1", score=0.95)]),
    ], ONTOLOGY)
    shown = hybrid_routing(tasks, 0.8, shown_version="v2")
    assert (shown["waiting_tasks"], shown["at_threshold"]["waiting_above"]) == (1, 1)
    latest = hybrid_routing(tasks, 0.8)  # unknown version: each task's latest prediction
    assert (latest["waiting_tasks"], latest["at_threshold"]["waiting_above"]) == (2, 1)
