"""A detector version against the zero-shot pipeline and the active version, as each would serve
(`backend.training.comparison`), and the recipe fitted to a project (`backend.training.recipe`)."""

import numpy as np
import pytest

from backend.core.detections import Detections
from backend.core.errors import Cancelled, ModelUnavailable
from backend.core.params import TrainParams
from backend.models.detector import DetectorSpec, fit_anchor_sizes
from backend.training.comparison import (ZERO_SHOT_CHUNK, NOTHING_SHOWN, THRESHOLDS, ServedCut, ZeroShot, compare,
                                         cross_fitted_seconds, cut_costs, fitted_cut, label_seconds,
                                         zero_shot_predictions)
from backend.training.dataset import LabeledImage
from backend.core.effort import FAST, drawing_model
from backend.training.project_detector import _fresh, with_fresh
from backend.training.recipe import MIN_BUDGET_S, fitted_spec, time_budget, working_side

CLASSES = ["cat", "tree"]
TRUTHS = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), "labels": np.array([1, 2])}]
IMAGES = [np.zeros((40, 40, 3), np.uint8)]


def _pred(boxes, scores, labels):
    return {"boxes": np.array(boxes, np.float32).reshape(-1, 4), "scores": np.array(scores, np.float32),
            "labels": np.array(labels, np.int64)}


def _zero_shot(boxes, labels, covers=("cat",), calls=None):
    def detect(images):
        if calls is not None:
            calls.append(len(images))
        return [Detections(np.array(boxes, np.float32).reshape(-1, 4), np.full(len(boxes), 0.9), labels, (40, 40))
                for _ in images]
    return ZeroShot("zs-1", set(covers), detect)


@pytest.mark.parametrize("threshold,cap,kept", [(0.0, 100, 3), (0.5, 100, 2), (0.0, 1, 1), (0.95, 100, 0)])
def test_served_cut(threshold, cap, kept):
    out = ServedCut(threshold, cap).apply(_pred([[0, 0, 1, 1]] * 3, [0.2, 0.9, 0.6], [1, 1, 1]))
    assert len(out["boxes"]) == kept and list(out["scores"]) == sorted(out["scores"], reverse=True)


def test_zero_shot_runs_in_chunks_and_keeps_the_projects_classes():
    calls = []
    zero_shot = _zero_shot([[0, 0, 10, 10], [5, 5, 9, 9]], ("cat", "dog"), calls=calls)
    images = [np.full((8, 8, 3), i, np.uint8) for i in range(ZERO_SHOT_CHUNK + 3)]
    first = zero_shot_predictions(zero_shot, images, CLASSES)
    assert calls == [ZERO_SHOT_CHUNK, 3]  # once per image: the service's detect remembers (tests/test_region_memory.py)
    assert [list(p["labels"]) for p in first] == [[1]] * len(images)  # "dog" not a class


def test_zero_shot_better_on_cat_keeps_it_the_detector_takes_tree():
    mine = [_pred([[0, 0, 10, 10], [40, 40, 50, 50], [20, 20, 30, 30]], [0.3, 0.9, 0.8], [1, 1, 2])]
    out = compare(mine, TRUTHS, CLASSES, ServedCut(), True, IMAGES, _zero_shot([[0, 0, 10, 10]], ("cat",)))
    assert out["sources"] == {"cat": "zero-shot", "tree": "detector"}
    assert out["zero_shot"]["per_class"]["cat"]["ap50"] == 1.0 and out["served_per_class"]["cat"]["ap50"] == 0.5
    assert out["served_ap50"] == 1.0 and out["baseline_served_ap50"] == 0.5  # nothing active: zero-shot's cat, no tree


def test_the_served_cut_applies_to_every_side():
    mine = [_pred([[0, 0, 10, 10], [20, 20, 30, 30]], [0.2, 0.2], [1, 2])]  # right boxes, low scores
    assert compare(mine, TRUTHS, CLASSES, ServedCut(), True, IMAGES)["served_ap50"] == 1.0
    cut = compare(mine, TRUTHS, CLASSES, ServedCut(0.3, 50), True, IMAGES)
    assert cut["served_ap50"] == 0.0  # the project never shows them


def test_against_an_active_version_with_its_sources():
    mine = [_pred([[20, 20, 30, 30]], [0.9], [2])]
    old = [_pred([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.9], [1, 2])]
    out = compare(mine, TRUTHS, CLASSES, ServedCut(), True, IMAGES, _zero_shot([], ()), old, ("cat", "tree"),
                  {"sources": {"cat": "detector", "tree": "detector"}})
    assert out["baseline_served_ap50"] == 1.0 and out["served_ap50"] == 0.5  # it lost cat: never activated


def test_a_zero_shot_pipeline_that_cannot_load_hands_its_labels_over():
    def broken(images):
        raise ModelUnavailable("weights gone")
    mine = [_pred([[0, 0, 10, 10]], [0.9], [1])]
    out = compare(mine, TRUTHS, CLASSES, ServedCut(), True, IMAGES, ZeroShot("zs", {"cat"}, broken))
    assert out["zero_shot"]["error"] == "weights gone" and out["sources"] == {"cat": "detector", "tree": "detector"}


def test_scored_on_its_training_tasks_it_takes_only_what_zero_shot_cannot():
    mine = [_pred([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.9], [1, 2])]
    out = compare(mine, TRUTHS, CLASSES, ServedCut(), False, IMAGES, _zero_shot([], ()))
    assert out["sources"] == {"cat": "zero-shot", "tree": "detector"} and out["evaluated_held_out"] is False


def _images(n, side=160):
    return [np.zeros((side, side, 3), np.uint8)] * n


@pytest.mark.parametrize("side,box,largest,expected", [
    (160, 20, 512, 192),  # small trees: upscaled until the small boxes reach 24 px
    (480, 200, 512, 256),  # large objects: downscaled, not below 256
    (160, 200, 512, 160),  # ... nor below the images' own size
    (400, 6, 512, 512),  # tiny objects: up to train_image_size
])
def test_working_side(side, box, largest, expected):
    boxes = [np.array([[0, 0, box, box]], np.float32)] * 4
    assert working_side(_images(4, side), boxes, largest) == expected


def test_anchors_spread_over_the_boxes():
    sizes = fit_anchor_sizes(np.geomspace(20, 80, 50), levels=3)
    flat = [s for level in sizes for s in level]
    assert len(sizes) == 3 and all(len(level) == 2 for level in sizes)
    assert flat == sorted(flat) and 18 <= flat[0] <= 22 and 75 <= flat[-1] <= 82
    assert fit_anchor_sizes([], levels=3) == ()


def test_a_warm_start_keeps_the_scale_and_anchors_while_the_fit_is_close():
    boxes = [np.array([[0, 0, 20, 20], [0, 0, 60, 60]], np.float32)] * 4
    first = fitted_spec(_images(4), boxes, 1, TrainParams())
    assert first.stride4 is False and first.anchor_sizes and first.min_size == 192
    close = [np.array([[0, 0, 21, 21], [0, 0, 62, 62]], np.float32)] * 8
    assert fitted_spec(_images(8), close, 1, TrainParams(), first).anchor_sizes == first.anchor_sizes
    far = [np.array([[0, 0, 60, 60], [0, 0, 150, 150]], np.float32)] * 8
    assert fitted_spec(_images(8), far, 1, TrainParams(), first).anchor_sizes != first.anchor_sizes
    legacy = DetectorSpec(num_classes=1)  # a version from before fitted anchors: refitted
    assert fitted_spec(_images(8), close, 1, TrainParams(), legacy).anchor_sizes


@pytest.mark.parametrize("n,per_image,cap,expected", [
    (8, 4, 900, MIN_BUDGET_S), (50, 4, 900, 200), (500, 4, 900, 900), (8, 0, 900, 900)])
def test_time_budget(n, per_image, cap, expected):
    assert time_budget(n, TrainParams(seconds_per_image=per_image, time_budget_s=cap)) == expected


# class-1 predictions (score, box) on one image with two true boxes → the cut that costs least
@pytest.mark.parametrize("scored,cut", [
    ([(0.9, [0, 0, 10, 10]), (0.8, [20, 20, 30, 30])], 0.8),  # both right: show both (the highest cut keeping them)
    ([(0.9, [0, 0, 10, 10]), (0.4, [50, 50, 60, 60]), (0.3, [60, 60, 70, 70])], 0.9),  # drop the wrong low ones
    ([(0.9, [50, 50, 60, 60]), (0.8, [60, 60, 70, 70])], NOTHING_SHOWN),  # only wrong boxes: show nothing
])
def test_fitted_cut_minimises_annotation_time(scored, cut):
    truths = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), "labels": np.array([1, 1])}]
    prediction = _pred([b for _, b in scored], [s for s, _ in scored], [1] * len(scored))
    costs = cut_costs([prediction], truths, 1)
    assert costs.shape == (1, len(THRESHOLDS))
    assert fitted_cut(costs) == pytest.approx(cut)
    seconds_ = cross_fitted_seconds(costs)  # one image: its own cheapest cut
    assert seconds_ == costs.min() <= label_seconds([prediction], truths, 1, 0.0) and seconds_ <= 2 * FAST.draw


# one image, two true boxes: a right box at 0.9, three wrong ones at 0.4, the second tree found at 0.3. Showing down
# to 0.3 costs 1.6 + 3 × 2.6 + 1.6 = 11 s; stopping at 0.9 costs 1.6 s + drawing the second box
@pytest.mark.parametrize("draw_seconds,cut", [
    (7.0, 0.9),  # fast drawing (the default): 8.6 s < 11 s, the wrong boxes are not worth it
    (9.0, 0.9),  # 10.6 s < 11 s
    (12.0, 0.3),  # 13.6 s > 11 s: show them
    (25.5, 0.3),  # traditional drawing
])
def test_slower_drawing_fits_a_lower_cut(draw_seconds, cut):
    truths = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), "labels": np.array([1, 1])}]
    prediction = _pred([[0, 0, 10, 10], [50, 50, 60, 60], [60, 60, 70, 70], [70, 70, 80, 80], [20, 20, 30, 30]],
                       [0.9, 0.4, 0.4, 0.4, 0.3], [1] * 5)
    model = drawing_model(draw_seconds)
    assert fitted_cut(cut_costs([prediction], truths, 1, model)) == pytest.approx(cut)
    out = compare([prediction], truths, ["tree"], ServedCut(), True, IMAGES, model=model)
    assert out["thresholds"] == {"tree": pytest.approx(cut)}
    assert out["effort"]["draw_s"] == draw_seconds and out["effort"]["manual_s"] == 2 * draw_seconds
    assert out["effort"]["per_class"]["tree"]["detector_s"] == pytest.approx(min(11.0, 1.6 + draw_seconds))


# per-image seconds at three cuts → the leave-one-out estimate of serving at a fitted cut
@pytest.mark.parametrize("costs,expected", [
    ([[5.0, 3.0, 7.0]], 3.0),  # one image: its own cheapest cut, nothing to leave out
    ([[5.0, 3.0, 7.0], [5.0, 3.0, 7.0]], 6.0),  # images agree: the in-sample optimum
    ([[9.0, 1.0, 7.0], [1.0, 9.0, 7.0]], 18.0),  # each image's cheapest cut is the other's dearest: the optimism shows
    ([[4.0, 4.0, 7.0], [4.0, 4.0, 7.0]], 8.0),  # ties take the higher cut, at the same seconds
    # in sample the first cut (13 s); left out, each of the first two sees the third pull the others' sum to the
    # second cut (6 + 6) and the third pays the first cut (9)
    ([[2.0, 6.0, 7.0], [2.0, 6.0, 7.0], [9.0, 1.0, 7.0]], 21.0),
    # left out, the first image sees the second's tie (12.1 at both cuts) as the sum minus its own row, where
    # floating point leaves 12.100000000000001 at the first cut: the tie still goes to the higher cut (12.1)
    ([[14.7, 12.1, 14.0], [12.1, 12.1, 14.0]], 24.2),
    ([], 0.0),
])
def test_cross_fitted_seconds(costs, expected):
    costs = np.array(costs, float).reshape(-1, 3)
    assert cross_fitted_seconds(costs) == pytest.approx(expected)
    if len(costs):
        assert cross_fitted_seconds(costs) >= costs.sum(axis=0).min()  # never below the in-sample optimum


def test_sources_and_activation_follow_annotation_time():
    # the detector finds the tree right and the cat badly; zero-shot finds the cat right
    mine = [_pred([[2, 2, 12, 12], [20, 20, 30, 30]], [0.9, 0.9], [1, 2])]
    out = compare(mine, TRUTHS, CLASSES, ServedCut(0.3, 50), True, IMAGES, _zero_shot([[0, 0, 10, 10]], ("cat",)))
    effort = out["effort"]["per_class"]
    assert effort["tree"] == {"detector_s": 1.6, "zero_shot_s": 7.0, "manual_s": 7.0}
    assert effort["cat"]["zero_shot_s"] == 1.6 and effort["cat"]["detector_s"] > 1.6
    assert out["sources"] == {"cat": "zero-shot", "tree": "detector"}
    assert out["effort"]["served_s"] == 3.2 and out["effort"]["baseline_served_s"] == 8.6
    assert out["thresholds"]["tree"] == pytest.approx(0.9)


def _fresh_image(task_id, labels):
    return LabeledImage(task_id, np.zeros((8, 8, 3), np.uint8), np.zeros((len(labels), 4), np.float32), tuple(labels))


# (held-out indices, evaluated on, fresh images (task id, labels), limit) → (indices, evaluated on, fresh task ids)
WITH_FRESH = [
    ([3, 7], "held-out", [], 32, ([3, 7], "held-out", [])),
    ([3, 7], "held-out", [(20, ["tree"]), (21, [])], 32, ([3, 7], "held-out", [21, 20])),  # a reviewed empty image too
    ([3, 7], "held-out", [(20, ["car"])], 32, ([3, 7], "held-out", [])),  # only a label it was not trained on
    ([3, 7], "held-out", [(20, ["car", "tree"])], 32, ([3, 7], "held-out", [20])),
    ([3, 7], "held-out", [(20, ["tree"]), (22, ["tree"]), (21, ["tree"])], 2, ([3, 7], "held-out", [22, 21])),
    ([0, 1, 2], "training", [(20, ["tree"])], 32, ([], "held-out", [20])),  # no split yet: the fresh ones alone
    ([0, 1, 2], "training", [], 32, ([0, 1, 2], "training", [])),
]


@pytest.mark.parametrize("evaluation,evaluated_on,fresh,limit,expected", WITH_FRESH)
def test_images_annotated_during_training_join_the_evaluation(evaluation, evaluated_on, fresh, limit, expected):
    indices, on, extra = with_fresh(evaluation, evaluated_on, [_fresh_image(*f) for f in fresh], ["tree"], limit)
    assert (indices, on, [e.task_id for e in extra]) == expected


def test_fresh_images_that_cannot_be_read_leave_the_held_out_tasks_but_a_cancel_still_stops():

    def broken(seen):
        raise ConnectionError("Label Studio unreachable")

    def cancelled(seen):
        raise Cancelled("job cancelled")

    assert _fresh(broken, []) == [] and _fresh(None, []) == []
    (read,) = _fresh(lambda seen: [_fresh_image(20, ["tree"])] if seen == {1} else [], [_fresh_image(1, [])])
    assert read.task_id == 20  # asked with the task ids the version trained or was held out on
    with pytest.raises(Cancelled):
        _fresh(cancelled, [])
