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
