"""The annotation cost model (backend/training/effort.py, also the session benchmark's): actions and seconds."""

import pytest

from backend.training.effort import FAST, TRADITIONAL, actions, manual_seconds, seconds

TRUE = [[0, 0, 10, 10], [20, 20, 30, 30]]


# (predicted boxes, predicted labels, expected non-zero counts)
@pytest.mark.parametrize("boxes,labels,expected", [
    ([], [], {"draw": 2}),
    (TRUE, ["a", "a"], {"accept": 2}),
    (TRUE, ["a", "b"], {"accept": 1, "relabel": 1}),
    ([[0, 0, 10, 10], [20, 20, 26, 30]], ["a", "a"], {"accept": 1, "adjust": 1}),  # IoU 0.6
    ([[0, 0, 10, 10], [20, 20, 26, 30]], ["a", "b"], {"accept": 1, "adjust_relabel": 1}),
    ([[0, 0, 10, 10], [50, 50, 60, 60]], ["a", "a"], {"accept": 1, "delete": 1, "draw": 1}),
    ([[0, 0, 10, 10], [20, 20, 22, 22]], ["a", "a"], {"accept": 1, "delete": 1, "draw": 1}),  # IoU 0.04: no attempt
    ([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], ["a"] * 3, {"accept": 2, "delete": 1}),  # one duplicate
])
def test_actions(boxes, labels, expected):
    counts = actions(boxes, labels, TRUE, ["a", "a"])
    assert {k: v for k, v in counts.items() if v} == expected


@pytest.mark.parametrize("counts,fast,traditional", [
    ({"draw": 2}, 14.0, 51.0),
    ({"accept": 2}, 3.2, 3.2),
    ({"accept": 1, "adjust": 1}, 1.6 + 1.6 + 3.5, 1.6 + 1.6 + 12.75),
    ({"delete": 1, "draw": 1}, 2.6 + 7.0, 2.6 + 25.5),
    ({"relabel": 1, "adjust_relabel": 1}, 3.2 + 6.7, 3.2 + 15.95),
])
def test_seconds(counts, fast, traditional):
    assert seconds(counts, FAST) == pytest.approx(fast)
    assert seconds(counts, TRADITIONAL) == pytest.approx(traditional)


def test_manual_is_drawing_everything():
    assert manual_seconds(3, FAST) == 21.0 and manual_seconds(3, TRADITIONAL) == 76.5
