"""Detections → Label Studio JSON → Detections round trips (table-driven)."""

import numpy as np
import pytest

from backend.core.detections import Detections, box_iou, class_aware_nms
from backend.core.ontology import Control
from backend.labelstudio.results import detections_to_results, mask_to_polygons, results_to_detections, task_prediction

W, H = 200, 120
RECT = Control("box", "RectangleLabels", "image", "image", ("cat", "dog"))
BRUSH = Control("brush", "BrushLabels", "image", "image", ("cat", "dog"))
POLY = Control("poly", "PolygonLabels", "image", "image", ("cat", "dog"))
KEYS = Control("kp", "KeyPointLabels", "image", "image", ("cat",))
CHOICE = Control("cls", "Choices", "image", "image", ("cat", "dog"))
MULTI = Control("tags", "Choices", "image", "image", ("cat", "dog"), multiple=True)


def _mask(x0, y0, x1, y1, w=W, h=H):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def _dets(boxes, labels, masks=None, size=(W, H), scores=None):
    scores = scores if scores is not None else np.linspace(0.9, 0.5, len(boxes))
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), scores, labels, size,
                      None if masks is None else np.array(masks).reshape(-1, size[1], size[0]))


ROUND_TRIP = [
    ("one box", _dets([[10, 20, 60, 90]], ["cat"])),
    ("two labels", _dets([[0, 0, 50, 50], [100, 40, 200, 120]], ["cat", "dog"])),
    ("box touching all borders", _dets([[0, 0, W, H]], ["dog"])),
    ("fractional pixels", _dets([[10.25, 3.5, 77.75, 99.125]], ["cat"])),
    ("empty", Detections.empty((W, H))),
]


@pytest.mark.parametrize("name,dets", ROUND_TRIP, ids=[c[0] for c in ROUND_TRIP])
def test_rectangles_round_trip(name, dets):
    results = detections_to_results(dets, [RECT])
    assert len(results) == len(dets)
    for region in results:
        assert region["type"] == "rectanglelabels" and region["from_name"] == "box" and region["to_name"] == "image"
        assert (region["original_width"], region["original_height"]) == (W, H)
        v = region["value"]
        assert 0 <= v["x"] <= 100 and 0 <= v["y"] <= 100 and v["x"] + v["width"] <= 100.0001
    back = results_to_detections(results, (W, H))
    assert back.labels == dets.labels
    np.testing.assert_allclose(back.xyxy, dets.xyxy, atol=1e-3)
    np.testing.assert_allclose(back.scores, dets.scores, atol=1e-4)


MASK_CASES = [
    ("interior blob", [_mask(20, 30, 70, 90)], ["cat"]),
    ("touching left/top border", [_mask(0, 0, 40, 30)], ["dog"]),
    ("touching right/bottom border", [_mask(150, 80, W, H)], ["cat"]),
    ("whole image", [_mask(0, 0, W, H)], ["cat"]),
    ("two masks", [_mask(5, 5, 30, 30), _mask(100, 50, 180, 110)], ["cat", "dog"]),
]


@pytest.mark.parametrize("name,masks,labels", MASK_CASES, ids=[c[0] for c in MASK_CASES])
def test_brush_round_trip_is_exact(name, masks, labels):
    boxes = [[m.nonzero()[1].min(), m.nonzero()[0].min(), m.nonzero()[1].max() + 1, m.nonzero()[0].max() + 1]
             for m in masks]
    dets = _dets(boxes, labels, masks)
    results = detections_to_results(dets, [BRUSH])
    assert [r["value"]["format"] for r in results] == ["rle"] * len(masks)
    back = results_to_detections(results, (W, H), with_masks=True)
    assert np.array_equal(back.masks, dets.masks)
    np.testing.assert_allclose(back.xyxy, dets.xyxy)


@pytest.mark.parametrize("name,masks,labels", MASK_CASES, ids=[c[0] for c in MASK_CASES])
def test_polygon_round_trip(name, masks, labels):
    dets = _dets([[0, 0, 1, 1]] * len(masks), labels, masks)
    results = detections_to_results(dets, [POLY], polygon_tolerance=0.0)
    assert len(results) == len(masks)
    back = results_to_detections(results, (W, H), with_masks=True)
    for original, decoded in zip(dets.masks, back.masks):
        inter = (original & decoded).sum()
        assert inter / (original | decoded).sum() > 0.97
    for region in results:
        pts = np.array(region["value"]["points"])
        assert pts.min() >= 0 and pts.max() <= 100


def test_masks_without_mask_controls_and_controls_without_masks():
    dets = _dets([[10, 10, 50, 50]], ["cat"])
    assert detections_to_results(dets, [BRUSH, POLY]) == []  # no masks: no brush/polygon regions
    with_masks = _dets([[10, 10, 50, 50]], ["cat"], [_mask(10, 10, 50, 50)])
    types = sorted(r["type"] for r in detections_to_results(with_masks, [RECT, BRUSH, POLY]))
    assert types == ["brushlabels", "polygonlabels", "rectanglelabels"]


def test_labels_outside_a_control_are_never_emitted():
    dets = _dets([[0, 0, 10, 10], [20, 20, 40, 40]], ["cat", "horse"])
    labels = [r["value"]["rectanglelabels"][0] for r in detections_to_results(dets, [RECT])]
    assert labels == ["cat"]


def test_choices_single_and_multiple():
    dets = _dets([[0, 0, 10, 10], [5, 5, 20, 20], [30, 30, 60, 60]], ["dog", "cat", "dog"], scores=[0.4, 0.9, 0.7])
    single = detections_to_results(dets, [CHOICE])
    assert single[0]["value"]["choices"] == ["cat"] and single[0]["score"] == pytest.approx(0.9)
    multi = detections_to_results(dets, [MULTI])
    assert multi[0]["value"]["choices"] == ["cat", "dog"]
    assert detections_to_results(Detections.empty((W, H)), [CHOICE]) == []


def test_keypoints_at_box_centres():
    dets = _dets([[10, 20, 30, 60]], ["cat"])
    (region,) = detections_to_results(dets, [KEYS])
    assert region["value"]["x"] == pytest.approx(20 / W * 100) and region["value"]["y"] == pytest.approx(40 / H * 100)


def test_task_prediction_scores():
    dets = _dets([[0, 0, 10, 10], [5, 5, 20, 20]], ["cat", "dog"], scores=[0.8, 0.4])
    pred = task_prediction(detections_to_results(dets, [RECT]), "v1")
    assert pred["model_version"] == "v1" and pred["score"] == pytest.approx(0.6)
    assert task_prediction([], "v1") == {"result": [], "score": 0.0, "model_version": "v1"}


def test_malformed_region_names_the_region():
    with pytest.raises(ValueError, match="region 0"):
        results_to_detections([{"type": "rectanglelabels", "original_width": 10, "original_height": 10,
                                "value": {"x": 1}}])


def test_mask_to_polygons_splits_separate_parts():
    m = _mask(0, 0, 20, 20) | _mask(50, 50, 90, 100)
    polys = mask_to_polygons(m, 0.0)
    assert len(polys) == 2


def test_nms_is_class_aware_and_capped():
    dets = _dets([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], ["cat", "cat", "dog", "cat"],
                 scores=[0.9, 0.8, 0.7, 0.6])
    kept = class_aware_nms(dets, 0.5, 10)
    assert kept.labels == ("cat", "dog", "cat")
    assert len(class_aware_nms(dets, 0.5, 2)) == 2
    assert box_iou(dets.xyxy[:1], dets.xyxy[1:2])[0, 0] == pytest.approx(81 / 100)
