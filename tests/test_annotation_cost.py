"""The annotation cost model (backend/core/effort.py, also the session benchmark's): actions and seconds."""

import sys
from pathlib import Path

import pytest

from backend.core.effort import FAST, TRADITIONAL, actions, drawing_model, manual_seconds, seconds

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


# bench/retrain.py's held-out effort figures. Two tiles, truths `TRUE` each; class 1; scores decide what a cut shows.
def _tile(boxes, scores):
    import numpy as np
    return {"boxes": np.array(boxes, np.float32).reshape(-1, 4), "scores": np.array(scores, np.float32),
            "labels": np.ones(len(scores), np.int64)}


# (predictions of the two tiles, expected saving_pct, cut, found_pct, saving_if_placed_pct, saving_if_all_found_pct)
@pytest.mark.parametrize("tiles,saving,cut,found,placed,all_found", [
    # nothing predicted: everything drawn, nothing saved, nothing to gain from placement
    ([([], []), ([], [])], 0.0, 1.01, 0.0, 0.0, 0.0),
    # every tree found and accepted: 4 x 1.6 s instead of 4 x 7 s
    ([(TRUE, [1.0, 1.0]), (TRUE, [1.0, 1.0])], 77.1, 0.95, 100.0, 77.1, 77.1),
    # one tree per tile found, placed loosely (IoU 0.6: adjusted); the other drawn; a false box at 0.2 is cut off
    ([([[20, 20, 26, 30], [50, 50, 60, 60]], [0.8, 0.2]), ([[20, 20, 26, 30]], [0.8])], 13.6, 0.8, 50.0, 38.6, 27.1),
])
def test_held_out_effort(tiles, saving, cut, found, placed, all_found):
    import numpy as np
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from retrain import held_out_effort

    truths = [{"boxes": np.array(TRUE, np.float32), "labels": np.ones(2, np.int64)}] * 2
    effort = held_out_effort([_tile(b, s) for b, s in tiles], truths)
    assert (effort["saving_pct"], effort["cut"], effort["found_pct"]) == (saving, cut, found)
    assert (effort["saving_if_placed_pct"], effort["saving_if_all_found_pct"]) == (placed, all_found)


@pytest.mark.parametrize("draw_seconds,named,adjust", [
    (7.0, FAST, 3.5), (25.5, TRADITIONAL, 12.75), (12, None, 6.0),
    (0, FAST, 3.5)])  # 0: the measured time asked for, none known yet
def test_drawing_model_of_a_project(draw_seconds, named, adjust):
    model = drawing_model(draw_seconds)
    assert model is named if named else "train_draw_seconds" in model.name
    assert (model.draw, model.adjust, model.verify, model.delete) == (draw_seconds or 7.0, adjust, 1.6, 1.0)
