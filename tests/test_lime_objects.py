"""`lime_objects` on synthetic explanations: a known "classifier" (label log-odds add up the visible fraction of
each object) answers LIME's own random masks, so which boxes must come out is known exactly."""

import numpy as np
import pytest

from backend.core.detections import box_iou
from backend.core.params import PredictParams
from backend.pipelines.lime_boxes import explanation_to_detections
from backend.pipelines.lime_explain import Explanation, sample_masks, window_boxes
from backend.pipelines.lime_objects import (contained_fraction, extend_by_colour, find_objects, label_explained, merge_overlapping,
                                            object_regions, region_box, region_evidence, region_fill,
                                            split_at_valleys, superpixel_adjacency, superpixel_extents)

GRID = 8          # 8 x 8 superpixels of 8 x 8 pixels each: a 64 x 64 superpixel map
SCALE = 10        # the image is 640 x 640 pixels
SIZE = (GRID * 8 * SCALE, GRID * 8 * SCALE)
PARAMS = PredictParams()
OBJECT_COLOUR = {0: (60.0, 40.0, 30.0), 1: (50.0, -30.0, 20.0), 2: (70.0, 10.0, -40.0)}


def cells(rows: range, cols: range) -> list[int]:
    return [r * GRID + c for r in rows for c in cols]


def cell_box(rows: range, cols: range) -> tuple[int, int, int, int]:
    """Pixel box of a block of cells in the 640 x 640 image."""
    step = 8 * SCALE
    return cols.start * step, rows.start * step, cols.stop * step, rows.stop * step


def synthetic(objects: list[dict], labels: int, n_samples: int = 256, seed: int = 0, noise: float = 0.2,
              window_gain: dict | None = None) -> Explanation:
    """Explanation of a synthetic image.

    objects: dicts with `label`, `cells` (superpixel ids), `gain` (log-odds added when fully shown) and optional
    `seam` (cells of background colour that carry only a fraction `seam_gain` of the per-cell gain: context the
    classifier likes a little); `saturates`: the gain comes in full once 1 / saturates of the cells are shown;
    `eye`: cells adding `eye_gain` on their own. Every label starts
    at log-odds -8 (+ noise). window_gain: label → log-odds a window adds when it holds one of its objects (the
    classifier recognises a small object at the larger scale).
    """
    segments = np.repeat(np.repeat(np.arange(GRID * GRID).reshape(GRID, GRID), 8, 0), 8, 1).astype(np.int32)
    z = sample_masks(n_samples, GRID * GRID, seed).bool().numpy()
    rng = np.random.default_rng(seed)
    logits = np.full((n_samples, labels), -8.0) + rng.normal(0, noise, (n_samples, labels))
    colours = np.tile(np.array([[40.0, 0.0, 0.0]]), (GRID * GRID, 1))
    for obj in objects:
        per_cell = np.full(len(obj["cells"]), obj["gain"] / len(obj["cells"]))
        for k, cell in enumerate(obj["cells"]):
            if cell in obj.get("seam", ()):
                per_cell[k] *= obj.get("seam_gain", 0.3)
        if obj.get("saturates"):  # a part of the object is as telling as all of it
            shown = z[:, obj["cells"]].mean(axis=1)
            logits[:, obj["label"]] += obj["gain"] * np.minimum(1.0, obj["saturates"] * shown)
        else:
            logits[:, obj["label"]] += z[:, obj["cells"]] @ per_cell
        if "eye" in obj:  # plus one telling part
            logits[:, obj["label"]] += obj["eye_gain"] * z[:, obj["eye"]].sum(axis=1)
        colours[[c for c in obj["cells"] if c not in obj.get("seam", ())]] = OBJECT_COLOUR[obj["label"]]
    probabilities = 1 / (1 + np.exp(-logits))
    windows = window_boxes(*SIZE, 3)
    window_logits = np.full((len(windows), labels), -8.0)
    for obj in objects:
        box = np.array(cell_box(range(min(obj["cells"]) // GRID, max(obj["cells"]) // GRID + 1),
                                range(min(c % GRID for c in obj["cells"]), max(c % GRID for c in obj["cells"]) + 1)),
                       np.float32)
        holds = contained_fraction(box, windows) >= 0.99
        window_logits[holds, obj["label"]] = max(-8.0 + obj["gain"], -8.0 + (window_gain or {}).get(obj["label"], 0))
    window_probabilities = 1 / (1 + np.exp(-window_logits))
    return Explanation(probabilities[0].astype(np.float32), segments, z, probabilities.astype(np.float32),
                       logits.astype(np.float32), colours.astype(np.float32), windows,
                       window_probabilities.astype(np.float32))


CAT_A = cells(range(1, 4), range(1, 4))
CAT_B = cells(range(5, 8), range(4, 7))
CUP = cells(range(5, 7), range(0, 2))
# two objects of one label side by side, joined by a column of background the classifier likes a little
LEFT, SEAM, RIGHT = cells(range(2, 5), range(0, 3)), cells(range(2, 5), range(3, 4)), cells(range(2, 5), range(4, 7))

SCENES = {
    "one saturated object": (
        [dict(label=0, cells=CAT_A, gain=14.0)], None,
        [(0, cell_box(range(1, 4), range(1, 4)))]),
    "big object recognised from any 42 % of it, plus one telling part": (
        [dict(label=0, cells=cells(range(0, 7), range(0, 6)), gain=10.0, saturates=2.4, eye=[2 * GRID + 2],
              eye_gain=8.0)], None,
        [(0, cell_box(range(0, 7), range(0, 6)))]),
    "second label weak in the whole image, clear in a window": (
        [dict(label=0, cells=CAT_A, gain=14.0), dict(label=1, cells=CUP, gain=3.0)], {1: 8.5},
        [(0, cell_box(range(1, 4), range(1, 4))), (1, cell_box(range(5, 7), range(0, 2)))]),
    "weak object nowhere clear (no window sees it either)": (
        [dict(label=0, cells=CAT_A, gain=14.0), dict(label=1, cells=CUP, gain=3.0)], None,
        [(0, cell_box(range(1, 4), range(1, 4)))]),
    "two objects of one label apart": (
        [dict(label=0, cells=CAT_A, gain=10.0), dict(label=0, cells=CAT_B, gain=10.0)], None,
        [(0, cell_box(range(1, 4), range(1, 4))), (0, cell_box(range(5, 8), range(4, 7)))]),
    "two objects of one label joined by weakly positive background": (
        [dict(label=0, cells=LEFT, gain=10.0), dict(label=0, cells=SEAM + RIGHT, gain=10.0 * 12 / 9, seam=SEAM)],
        None,
        [(0, cell_box(range(2, 5), range(0, 3))), (0, cell_box(range(2, 5), range(4, 7)))]),
    "nothing of the labels in the picture": ([], None, []),
}


@pytest.mark.parametrize("name", list(SCENES))
def test_synthetic_scenes_give_the_expected_boxes(name):
    objects, window_gain, expected = SCENES[name]
    expl = synthetic(objects, labels=3, window_gain=window_gain)
    dets = explanation_to_detections(expl, ["cat", "cup", "dog"], SIZE, PARAMS, with_masks=True)
    assert len(dets) == len(expected), (name, dets)
    labels = np.array([["cat", "cup", "dog"].index(label) for label in dets.labels])
    for label, box in expected:  # each expected object has its own box (a seam may go with either object)
        iou = box_iou(np.array([box], np.float32), dets.xyxy)[0] * (labels == label)
        assert iou.max() >= 0.7, (name, label, box, dets)
        labels[iou.argmax()] = -1
    assert dets.masks is not None and dets.masks.shape == (len(expected), SIZE[1], SIZE[0])
    for mask, box in zip(dets.masks, dets.xyxy.astype(int)):  # the mask is the object's superpixels: its box
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == tuple(box)


def test_score_is_the_best_views_probability_for_a_box_the_object_fills():
    expl = synthetic([dict(label=0, cells=CAT_A, gain=14.0), dict(label=1, cells=CUP, gain=3.0)], labels=2,
                     window_gain={1: 8.5})
    objects = {o.label: o for o in find_objects(expl, SIZE, 0.5, 0.15, 40, 0.0)}
    assert objects[0].score == pytest.approx(expl.probabilities[0])  # the whole image shows the cat best
    assert expl.probabilities[1] < 0.01 and objects[1].score == pytest.approx(1 / (1 + np.exp(-0.5)), abs=1e-6)
    assert objects[1].superpixels.tolist() == sorted(CUP)
    shown = expl.samples[:, CUP].mean(axis=1) >= 0.75  # no window holds the whole image: image and samples speak
    assert region_evidence(expl, 1, np.array(CUP), np.array([0, 0, 640, 640], np.float32)) == \
        pytest.approx(max(float(expl.probabilities[1]), float(expl.sample_probabilities[shown, 1].mean())))


@pytest.mark.parametrize("weights,stderr,seed,grow,expected", [
    ([0, 0, 1.0, 0.6, 0.2, 0, 0, 0.9], 0.05, 0.5, 0.15, [[2, 3, 4], [7]]),     # two groups on a chain 0-1-...-7
    ([0, 0, 1.0, 0.6, 0.2, 0, 0, 0.9], 0.05, 0.5, 0.3, [[2, 3], [7]]),         # a higher grow level stops at 4
    ([0, 0, 1.0, 0.6, 0.2, 0, 0, 0.3], 0.05, 0.5, 0.15, [[2, 3, 4]]),          # 7 is no seed: dropped
    ([0, 0, 1.0, 0.6, 0.2, 0, 0, 0.9], 0.4, 0.5, 0.15, [[2, 3], [7]]),         # 4 is within its noise (0.2 < 0.4)
    ([0, 0, 1.0, 0.6, 0.2, 0, 0, 0.9], 0.6, 0.5, 0.15, []),                    # no seed stands out of the noise
    ([-1.0, -0.2, 0, 0, 0, 0, 0, 0], 0.05, 0.5, 0.15, []),                     # nothing positive
])
def test_object_regions_on_a_chain(weights, stderr, seed, grow, expected):
    chain = np.zeros((8, 8), bool)
    chain[np.arange(7), np.arange(1, 8)] = chain[np.arange(1, 8), np.arange(7)] = True
    regions = object_regions(np.array(weights), np.full(8, stderr), chain, seed, grow)
    assert sorted(r.tolist() for r in regions) == expected


@pytest.mark.parametrize("weights,valley,expected", [
    ([1.0, 0.3, 0.9], 0.5, [[0, 1], [2]]),      # the saddle (0.3) is under half the lower peak: two objects; the
                                                # saddle goes with the stronger peak
    ([1.0, 0.6, 0.9], 0.5, [[0, 1, 2]]),        # a high saddle: one object
    ([1.0, 0.3, 0.4], 0.5, [[0, 1, 2]]),        # the second peak is under the seed level (0.5): no object of its own
    ([1.0, 0.2, 0.9, 0.1, 0.8], 0.5, [[0, 1], [2, 3], [4]]),
])
def test_split_at_valleys_on_a_chain(weights, valley, expected):
    n = len(weights)
    chain = np.zeros((n, n), bool)
    chain[np.arange(n - 1), np.arange(1, n)] = chain[np.arange(1, n), np.arange(n - 1)] = True
    pieces = split_at_valleys(np.array(weights), np.arange(n), chain, seed_level=0.5, valley=valley)
    assert sorted(p.tolist() for p in pieces) == expected


GREY, RED = (50.0, 0.0, 0.0), (50.0, 60.0, 40.0)


@pytest.mark.parametrize("weights,colours,expected", [
    # chain 0-1-...-5; the region is [1, 2] (core: 1); extension needs weight >= 0.2 and colour within 10 of 1's
    ([0.0, 1.0, 0.5, 0.3, 0.25, 0.0], [GREY] * 6, [1, 2, 3, 4]),              # same colour, telling: carried over
    ([0.0, 1.0, 0.5, 0.3, 0.1, 0.3], [GREY] * 6, [1, 2, 3]),                  # 4 is too weak (a background of the
                                                                              # object's colour): stops there
    ([0.3, 1.0, 0.5, 0.3, 0.3, 0.0], [RED, GREY, GREY, RED, GREY, GREY], [1, 2]),  # other colour: not carried
])
def test_extend_by_colour_on_a_chain(weights, colours, expected):
    chain = np.zeros((6, 6), bool)
    chain[np.arange(5), np.arange(1, 6)] = chain[np.arange(1, 6), np.arange(5)] = True
    grown = extend_by_colour([np.array([1, 2])], np.array(weights), np.array(colours), chain, min_weight=0.2,
                             core_weight=0.8, max_distance=10.0)
    assert [g.tolist() for g in grown] == [expected]


def test_merge_overlapping_adjacency_and_boxes():
    segments = np.repeat(np.repeat(np.arange(16).reshape(4, 4), 2, 0), 2, 1)  # 4 x 4 cells of 2 x 2 pixels
    adjacent = superpixel_adjacency(segments)
    assert adjacent[0, 1] and adjacent[0, 4] and not adjacent[0, 5] and not adjacent[0, 0]
    extents = superpixel_extents(segments)
    assert extents[5].tolist() == [2, 2, 4, 4]
    assert region_box(extents, np.array([0, 4, 8, 9]), (80, 80), (8, 8)).tolist() == [0, 0, 40, 60]
    # an L (0, 4, 8, 9) and a cell inside its box (5): one object; a far cell (15) stays apart
    regions = [np.array([0, 4, 8, 9]), np.array([5]), np.array([15])]
    boxes = [region_box(extents, r, (80, 80), (8, 8)) for r in regions]
    assert sorted(r.tolist() for r in merge_overlapping(regions, boxes, 0.5)) == [[0, 4, 5, 8, 9], [15]]
    assert region_fill(segments, np.array([0, 4, 8, 9]), extents) == pytest.approx(4 / 6)  # an L in a 2 x 3 box
    assert region_fill(segments, np.array([0, 15]), extents) == pytest.approx(2 / 16)
    assert contained_fraction(np.array([0, 0, 10, 10.0]), np.array([[5, 0, 20, 10.0], [20, 20, 30, 30.0]])).tolist() \
        == [0.5, 0.0]


BIG = cells(range(0, 7), range(0, 6))
EYE = [2 * GRID + 2]


@pytest.mark.parametrize("scene,found,explained", [
    ("cat", CAT_A, True),          # hiding the whole cat makes it fade
    ("cat", CUP, False),           # the wrong place: hiding it changes nothing
    ("big", BIG, True),
    ("big", EYE, False),           # the telling part of a big object whose any 42 % still carries the label
])
def test_label_explained_by_the_cells_that_carry_it(scene, found, explained):
    objects = {"cat": [dict(label=0, cells=CAT_A, gain=14.0)],
               "big": [dict(label=0, cells=BIG, gain=10.0, saturates=2.4, eye=EYE, eye_gain=8.0)]}[scene]
    assert label_explained(synthetic(objects, labels=1), 0, np.array(found)) is explained
