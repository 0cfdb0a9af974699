"""Review-priority scores and their calibration (table-driven, synthetic `Detections`)."""

import json

import numpy as np
import pytest

from backend.core.detections import Detections
from backend.predictions.score_calibration import CalibrationError, ScoreCalibration
from backend.predictions.scoring import (CONFIDENCE_RULES, agreement_errors, choice_margin, confidence_score,
                                         errors_review_score, errors_score, expected_errors, expected_f1,
                                         match_regions, mirror_image, ranks_better, review_score, unmirror,
                                         view_agreement)

W, H = 200, 120
CAT, CUP = [20, 10, 80, 70], [110, 40, 190, 110]


def _dets(boxes, labels, scores=None, masks=None, size=(W, H)):
    scores = [0.9] * len(boxes) if scores is None else scores
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), scores, labels, size, masks)


def _as_mirror(dets):
    """What the pipeline would return on the mirror image for regions `dets` of the image."""
    return unmirror(dets)


CLEAN = _dets([CAT, CUP], ["cat", "cup"])

# (case, image regions, regions the mirror pass finds (in the image's frame), expected score rank vs CLEAN: "<" / "=")
AGAINST_CLEAN = [
    ("identical views", CLEAN, CLEAN, "="),
    ("box only in the image", _dets([CAT, CUP, [5, 80, 40, 115]], ["cat", "cup", "cat"]), CLEAN, "<"),
    ("box only in the mirror", CLEAN, _dets([CAT, CUP, [5, 80, 40, 115]], ["cat", "cup", "cat"]), "<"),
    ("box missed in the mirror", CLEAN, _dets([CAT], ["cat"]), "<"),
    ("shifted box in the mirror", CLEAN, _dets([[30, 10, 90, 70], CUP], ["cat", "cup"]), "<"),
    ("loose box in the mirror", CLEAN, _dets([[10, 0, 90, 80], CUP], ["cat", "cup"]), "<"),
    ("low confidence", _dets([CAT, CUP], ["cat", "cup"], [0.9, 0.4]), _dets([CAT, CUP], ["cat", "cup"], [0.9, 0.4]),
     "<"),
    ("label differs in the mirror", CLEAN, _dets([CAT, CUP], ["cup", "cup"]), "<"),
]


@pytest.mark.parametrize("case,image,mirror,relation", AGAINST_CLEAN, ids=[c[0] for c in AGAINST_CLEAN])
def test_review_score_against_a_clean_task(case, image, mirror, relation):
    clean = review_score(CLEAN, _as_mirror(CLEAN))
    score = review_score(image, _as_mirror(mirror))
    assert isinstance(score, float) and 0.0 <= score <= 1.0
    assert score == pytest.approx(clean) if relation == "=" else score < clean - 0.05


# (case, image regions, mirror regions in the image's frame, unmatched credit, exact score)
EXACT = [
    ("identical views = mean confidence", _dets([CAT, CUP], ["cat", "cup"], [0.9, 0.5]),
     _dets([CAT, CUP], ["cat", "cup"], [0.9, 0.5]), 0.5, 0.7),
    ("confidences of a pair averaged", _dets([CAT], ["cat"], [1.0]), _dets([CAT], ["cat"], [0.6]), 0.5, 0.8),
    ("unmatched region, no credit", _dets([CAT], ["cat"], [1.0]), _dets([CAT, CUP], ["cat", "cup"], [1.0, 0.8]), 0.0,
     0.5),
    ("unmatched region, half credit", _dets([CAT], ["cat"], [1.0]), _dets([CAT, CUP], ["cat", "cup"], [1.0, 0.8]),
     0.5, 0.7),
    ("pair at IoU 0.6 counts 0.6", _dets([[0, 0, 100, 60]], ["cat"], [1.0]), _dets([[0, 0, 60, 60]], ["cat"], [1.0]),
     0.5, 0.6),
    ("pair below IoU 0.5 is two unmatched regions", _dets([[0, 0, 100, 60]], ["cat"], [1.0]),
     _dets([[0, 0, 40, 60]], ["cat"], [0.6]), 0.5, 0.4),
    ("same box, other label: no match", _dets([CAT], ["cat"]), _dets([CAT], ["cup"]), 0.0, 0.0),
    ("same box, other label, half credit", _dets([CAT], ["cat"]), _dets([CAT], ["cup"]), 0.5, 0.45),
    ("empty in both views", Detections.empty((W, H)), Detections.empty((W, H)), 0.5, 0.0),
    ("empty in the mirror only, no credit", CLEAN, Detections.empty((W, H)), 0.0, 0.0),
    ("empty in the mirror only, half credit", CLEAN, Detections.empty((W, H)), 0.5, 0.45),
]


@pytest.mark.parametrize("case,image,mirror,credit,expected", EXACT, ids=[c[0] for c in EXACT])
def test_review_score_formula(case, image, mirror, credit, expected):
    assert review_score(image, _as_mirror(mirror), unmatched_credit=credit) == pytest.approx(expected, abs=1e-6)


def test_review_score_reads_the_mirror_in_mirror_pixels():
    """A box at the left of the image is found at the right of the mirror: passing the image's regions as the
    mirror's (not mapped) must not count as agreement."""
    left = _dets([[0, 0, 50, 50]], ["cat"])
    assert review_score(left, _as_mirror(left)) == pytest.approx(0.9)
    assert review_score(left, left) == pytest.approx(0.45)  # two regions, each seen in one view only


# (case, a, b, min_iou, expected matches [(i, j)])
MATCHES = [
    ("greedy takes the best IoU first", _dets([[0, 0, 10, 10], [0, 0, 12, 10]], ["cat", "cat"]),
     _dets([[0, 0, 12, 10]], ["cat"]), 0.5, [(1, 0)]),
    ("labels must agree", _dets([CAT, CUP], ["cat", "cup"]), _dets([CUP, CAT], ["cat", "cup"]), 0.5, []),
    ("one to one", _dets([CAT], ["cat"]), _dets([CAT, CAT], ["cat", "cat"]), 0.5, [(0, 0)]),
    ("threshold is inclusive", _dets([[0, 0, 10, 10]], ["cat"]), _dets([[0, 0, 5, 10]], ["cat"]), 0.5, [(0, 0)]),
    ("lower threshold matches looser boxes", _dets([[0, 0, 10, 10]], ["cat"]), _dets([[0, 0, 4, 10]], ["cat"]),
     0.3, [(0, 0)]),
    ("empty side", _dets([CAT], ["cat"]), Detections.empty((W, H)), 0.5, []),
]


@pytest.mark.parametrize("case,a,b,min_iou,expected", MATCHES, ids=[c[0] for c in MATCHES])
def test_match_regions(case, a, b, min_iou, expected):
    assert [(i, j) for i, j, _ in match_regions(a, b, min_iou)] == expected


def _mask(x0, y0, x1, y1, w=W, h=H):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


MIRROR_CASES = [
    ("boxes at the borders", _dets([[0, 0, 1, 1], [199, 119, 200, 120], [0, 0, W, H]], ["cat", "cup", "cat"])),
    ("half pixels", _dets([[10.5, 3.5, 77.5, 99.5]], ["cat"])),
    ("full-size masks", _dets([CAT, CUP], ["cat", "cup"], masks=np.stack([_mask(*CAT), _mask(*CUP)]))),
    ("working-size masks", _dets([CAT], ["cat"], masks=_mask(10, 5, 40, 35, 100, 60)[None])),
    ("empty", Detections.empty((W, H), with_masks=True)),
]


@pytest.mark.parametrize("case,dets", MIRROR_CASES, ids=[c[0] for c in MIRROR_CASES])
def test_unmirror_round_trip_is_exact(case, dets):
    mirrored = unmirror(dets)
    back = unmirror(mirrored, W)
    assert np.array_equal(back.xyxy, dets.xyxy) and back.labels == dets.labels
    assert np.array_equal(back.scores, dets.scores)
    assert (back.masks is None) == (dets.masks is None)
    if dets.masks is not None:
        assert np.array_equal(back.masks, dets.masks)
        assert np.array_equal(mirrored.masks, dets.masks[:, :, ::-1])
    assert (mirrored.xyxy[:, 2] >= mirrored.xyxy[:, 0]).all()


def test_mirror_image_matches_unmirror():
    """A painted box found on the mirror image and mapped back lands on the box painted in the image."""
    image = np.zeros((H, W, 3), np.uint8)
    image[10:70, 20:80] = 255
    flipped = mirror_image(image)
    assert flipped.flags["C_CONTIGUOUS"] and flipped.shape == image.shape
    ys, xs = np.nonzero(flipped[:, :, 0])
    found = _dets([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], ["cat"])
    assert unmirror(found, W).xyxy.tolist() == [CAT]
    assert np.array_equal(mirror_image(flipped), image)


# (case, region scores, rule, expected)
CONFIDENCE = [
    ("mean", [0.9, 0.5], "mean", 0.7),
    ("min", [0.9, 0.5], "min", 0.5),
    ("geometric", [0.9, 0.4], "geometric", 0.6),
    ("product", [0.9, 0.5], "product", 0.45),
    ("lower half of three", [0.9, 0.5, 0.3], "lower_half", 0.4),
    ("empty", [], "mean", 0.0),
    ("empty min", [], "min", 0.0),
]


@pytest.mark.parametrize("case,scores,rule,expected", CONFIDENCE, ids=[c[0] for c in CONFIDENCE])
def test_confidence_score(case, scores, rule, expected):
    dets = _dets([CAT] * len(scores), ["cat"] * len(scores), scores) if scores else Detections.empty((W, H))
    assert confidence_score(dets, rule) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("rule", CONFIDENCE_RULES)
def test_confidence_score_is_lower_with_a_low_confidence_region(rule):
    confident = _dets([CAT, CUP], ["cat", "cup"], [0.9, 0.9])
    doubtful = _dets([CAT, CUP], ["cat", "cup"], [0.9, 0.3])
    assert confidence_score(doubtful, rule) < confidence_score(confident, rule)


def test_confidence_score_rejects_unknown_rule():
    with pytest.raises(ValueError, match="median"):
        confidence_score(CLEAN, "median")


# (case, probabilities, expected margin)
MARGINS = [
    ("clear winner", {"cat": 0.9, "dog": 0.05, "cup": 0.05}, 0.85),
    ("tie", {"cat": 0.45, "dog": 0.45, "cup": 0.1}, 0.0),
    ("order does not matter", [0.1, 0.3, 0.6], 0.3),
    ("one label", {"cat": 0.7}, 0.7),
    ("no labels", {}, 0.0),
    ("out-of-range values clipped", [1.2, -0.1], 1.0),
]


@pytest.mark.parametrize("case,probabilities,expected", MARGINS, ids=[c[0] for c in MARGINS])
def test_choice_margin(case, probabilities, expected):
    margin = choice_margin(probabilities)
    assert isinstance(margin, float) and margin == pytest.approx(expected, abs=1e-9)


def _reviewed(n, seed=0):
    """n reviewed tasks whose acceptance becomes likelier with the score."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0, 1, n)
    return scores, rng.uniform(0, 1, n) < scores


def test_calibration_is_monotone_and_in_unit_range():
    scores, accepted = _reviewed(200)
    calibration = ScoreCalibration.fit(scores, accepted)
    grid = np.linspace(-0.5, 1.5, 201)
    values = calibration.apply(grid)
    assert (np.diff(values) >= 0).all() and values.min() >= 0 and values.max() <= 1
    assert values[-1] - values[0] > 0.5  # it learnt that high scores are accepted more often
    assert calibration.n_reviewed == 200 and calibration.n_accepted == int(accepted.sum())


def test_calibration_matches_scikit_learn():
    from sklearn.isotonic import IsotonicRegression

    scores, accepted = _reviewed(80, seed=3)
    reference = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(scores, accepted.astype(float))
    grid = np.linspace(0, 1, 57)
    np.testing.assert_allclose(ScoreCalibration.fit(scores, accepted).apply(grid), reference.predict(grid))


def test_calibration_json_round_trip():
    scores, accepted = _reviewed(50, seed=1)
    calibration = ScoreCalibration.fit(scores, accepted)
    stored = json.loads(json.dumps(calibration.to_dict()))
    restored = ScoreCalibration.from_dict(stored)
    grid = np.linspace(0, 1, 101)
    assert np.array_equal(restored.apply(grid), calibration.apply(grid))
    assert isinstance(restored.apply(0.3), float) and restored.apply(0.3) == calibration.apply(0.3)
    assert (restored.n_reviewed, restored.n_accepted) == (50, int(accepted.sum()))


# (case, scores, accepted, message fragment)
REFUSED = [
    ("too few", np.linspace(0, 1, 19), np.arange(19) % 2 == 0, "at least 20"),
    ("only accepted", np.linspace(0, 1, 30), np.ones(30, bool), "both outcomes"),
    ("only corrected", np.linspace(0, 1, 30), np.zeros(30, bool), "both outcomes"),
    ("lengths differ", np.linspace(0, 1, 30), np.ones(29, bool), "outcomes"),
    ("not finite", np.r_[np.linspace(0, 1, 29), np.nan], np.arange(30) % 2 == 0, "finite"),
]


@pytest.mark.parametrize("case,scores,accepted,message", REFUSED, ids=[c[0] for c in REFUSED])
def test_calibration_refuses(case, scores, accepted, message):
    with pytest.raises(CalibrationError, match=message):
        ScoreCalibration.fit(scores, accepted)


BAD_STORED = [
    ("other format", {"format": "platt/1", "thresholds": [0, 1], "probabilities": [0, 1], "n_reviewed": 20,
                      "n_accepted": 10}),
    ("missing key", {"format": "isotonic/1", "thresholds": [0, 1], "probabilities": [0, 1]}),
    ("decreasing", {"format": "isotonic/1", "thresholds": [0, 1], "probabilities": [0.9, 0.1], "n_reviewed": 20,
                    "n_accepted": 10}),
    ("lengths differ", {"format": "isotonic/1", "thresholds": [0, 0.5, 1], "probabilities": [0, 1], "n_reviewed": 20,
                        "n_accepted": 10}),
    ("probability not a bool", {"format": "isotonic/1", "thresholds": [0, 1], "probabilities": [0, 1],
                                "n_reviewed": 20, "n_accepted": 0, "probability": "no"}),
]


@pytest.mark.parametrize("case,stored", BAD_STORED, ids=[c[0] for c in BAD_STORED])
def test_calibration_from_dict_refuses_malformed(case, stored):
    with pytest.raises(CalibrationError):
        ScoreCalibration.from_dict(stored)


def test_an_order_only_curve_passes_the_score_through_and_round_trips():
    curve = ScoreCalibration.order_only(94, 0)
    assert not curve.probability and (curve.n_reviewed, curve.n_accepted) == (94, 0)
    grid = np.linspace(-0.5, 1.5, 41)
    np.testing.assert_allclose(curve.apply(grid), np.clip(grid, 0, 1))
    stored = json.loads(json.dumps(curve.to_dict()))
    assert stored["probability"] is False
    restored = ScoreCalibration.from_dict(stored)
    assert not restored.probability and np.array_equal(restored.apply(grid), curve.apply(grid))
    fitted = ScoreCalibration.fit(*_reviewed(50, seed=1))
    assert fitted.probability and "probability" not in fitted.to_dict()  # stored forms before it read as fitted
    assert ScoreCalibration.from_dict(fitted.to_dict()).probability


class _SeesOneCat:
    """A selector whose pipeline finds one off-centre cat where the image has it: at x 10-60 of a 200-px image, and
    at x 140-190 of its mirror."""

    def run(self, pipeline, images, ontology, params, priority):
        found = []
        for image in images:
            x1 = 10.0 if image[0, 0, 0] == 255 else 140.0  # the marker pixel is top-left in the image only
            found.append(Detections(np.array([[x1, 20, x1 + 50, 80]], np.float32), [0.8], ["cat"], (200, 100)))
        return found


def test_review_scorer_compares_the_mirror_in_the_image_frame():
    """The predict path's scorer: a model that draws the same cat on both views scores its confidence (it once mapped
    the mirror's regions back twice, comparing the cat with its reflection)."""
    from backend.predictions.priority import ReviewScorer

    image = np.zeros((100, 200, 3), np.uint8)
    image[0, 0] = 255
    dets, scores = ReviewScorer("mirror").run(_SeesOneCat(), None, [image], None, None, 0)
    assert dets[0].xyxy.tolist() == [[10.0, 20.0, 60.0, 80.0]]
    assert scores == [pytest.approx(0.8)]


def test_review_scorer_errors_mode_counts_doubtful_regions():
    """The default mode: one cat seen the same way in both views at 0.8 leaves 0.2 corrections expected."""
    from backend.predictions.priority import ReviewScorer

    image = np.zeros((100, 200, 3), np.uint8)
    image[0, 0] = 255
    _, scores = ReviewScorer().run(_SeesOneCat(), None, [image], None, None, 0)
    assert scores == [pytest.approx(1 / 1.2)]


FAR = [150, 10, 190, 40]
SHIFTED = [25, 10, 85, 70]  # CAT moved 5 px right
SHIFT_IOU = 55 * 60 / (65 * 60)
# (case, views in the image's frame, agreement score, agreement errors)
VIEW_CASES = [
    ("nothing anywhere", [[], []], 0.0, 0.0),
    ("one cat, both views", [[(CAT, "cat", 0.8)], [(CAT, "cat", 0.8)]], 0.8, 0.2),
    ("one cat, one view", [[(CAT, "cat", 0.8)], []], 0.4, 0.6),
    ("seen only in the mirror", [[], [(CAT, "cat", 0.6)]], 0.3, 0.7),
    ("other label in the mirror", [[(CAT, "cat", 0.8)], [(CAT, "dog", 0.8)]], 0.4, 1.2),
    ("three views, two agree", [[(CAT, "cat", 0.9)], [(CAT, "cat", 0.6)], []], 0.5, 0.5),
    ("three views, a leftover in two", [[], [(FAR, "cup", 0.6)], [(FAR, "cup", 0.3)]], 0.3, 0.7),
    ("two cats, one doubtful", [[(CAT, "cat", 1.0), (FAR, "cat", 0.4)], [(CAT, "cat", 1.0), (FAR, "cat", 0.4)]],
     0.7, 0.6),
    ("a shifted match: IoU x (a + b) / 2", [[(CAT, "cat", 0.8)], [(SHIFTED, "cat", 0.6)]], 0.7 * SHIFT_IOU,
     1 - 0.7 * SHIFT_IOU),
    ("two overlapping leftovers of one view stay two", [[], [(CAT, "cat", 0.6), (SHIFTED, "cat", 0.5)]], 0.275,
     1.45),
    ("three views: own term x mean IoU", [[(CAT, "cat", 0.9)], [(SHIFTED, "cat", 0.6)], [(CAT, "cat", 0.3)]],
     (0.9 * (SHIFT_IOU + 1) / 2 + 0.6 * SHIFT_IOU + 0.3) / 3, 1 - (0.9 * (SHIFT_IOU + 1) / 2 + 0.6 * SHIFT_IOU + 0.3) / 3),
]


def _view(regions):
    return _dets([b for b, _, _ in regions], [l for _, l, _ in regions], [s for _, _, s in regions])


@pytest.mark.parametrize("case, views, agreement, errors", VIEW_CASES, ids=[c[0] for c in VIEW_CASES])
def test_view_agreement_and_agreement_errors(case, views, agreement, errors):
    views = [_view(v) for v in views]
    assert view_agreement(views) == pytest.approx(agreement, abs=1e-6)
    assert agreement_errors(views) == pytest.approx(errors, abs=1e-6)
    assert errors_score(agreement_errors(views)) == pytest.approx(1 / (1 + errors), abs=1e-6)
    if len(views) == 2:  # two views: the mirror formula, with the mirror given in its own pixels
        assert view_agreement(views) == pytest.approx(review_score(views[0], unmirror(views[1])), abs=1e-6)


def test_agreement_errors_order_many_doubtful_regions_first():
    """Mirror agreement (a mean) puts one doubtful region and ten equally doubtful ones level; agreement errors put
    the ten first."""
    one = _view([(CAT, "cat", 0.5)])
    ten = _view([([10 * i, 0, 10 * i + 8, 8], "cat", 0.5) for i in range(10)])
    assert view_agreement([one, one]) == view_agreement([ten, ten])
    assert errors_score(agreement_errors([ten, ten])) < errors_score(agreement_errors([one, one]))


# (case, candidates (box, label, score), cut, expected errors, expected F1)
CANDIDATE_CASES = [
    ("nothing", [], 0.3, 0.0, 1.0),
    ("one sure box", [(CAT, "cat", 1.0)], 0.3, 0.0, 1.0),
    ("one shown at 0.8", [(CAT, "cat", 0.8)], 0.3, 0.2, 1.6 / 1.8),
    ("a hidden candidate elsewhere", [(CAT, "cat", 0.8), (FAR, "cat", 0.2)], 0.3, 0.4, 1.6 / 2.0),
    ("a hidden duplicate of a shown box", [(CAT, "cat", 0.8), (CAT, "cat", 0.2)], 0.3, 0.2, 1.6 / 1.8),
    ("hidden duplicate of another label", [(CAT, "cat", 0.8), (CAT, "dog", 0.2)], 0.3, 0.4, 1.6 / 2.0),
    ("two hidden copies count once", [(FAR, "cup", 0.2), (FAR, "cup", 0.1)], 0.3, 0.2, 0.0),
]


@pytest.mark.parametrize("case, candidates, cut, errors, f1", CANDIDATE_CASES, ids=[c[0] for c in CANDIDATE_CASES])
def test_expected_errors_and_f1(case, candidates, cut, errors, f1):
    dets = _view(candidates)
    assert expected_errors(dets, cut) == pytest.approx(errors, abs=1e-6)
    assert expected_f1(dets, cut) == pytest.approx(f1, abs=1e-6)


def test_errors_review_score_puts_nothing_found_first():
    empty = _view([])
    assert errors_review_score([empty, empty]) == 0.0
    one = _view([(CAT, "cat", 0.8)])
    assert errors_review_score([one, one]) == pytest.approx(1 / 1.2)


# (case, default scores, candidate scores, F1, margin, chosen, default rho, candidate rho, reason says)
F1_UP = [0.1, 0.2, 0.3, 0.4]
RANKS_BETTER_CASES = [
    ("the candidate follows F1, the default does not", [3, 1, 4, 2], [1, 2, 3, 4], F1_UP, 0.02, True, 0.0, 1.0,
     "Spearman with F1 1.0 vs 0.0 for the default score"),
    ("both follow F1: no gain", [1, 2, 3, 4], [1, 2, 3, 4], F1_UP, 0.02, False, 1.0, 1.0,
     "the learned score ranks the reviewed tasks by F1 no better than the default one (Spearman 1.0 vs 1.0"),
    ("a gain under the margin", [1, 2, 4, 3], [1, 2, 3, 4], F1_UP, 0.25, False, 0.8, 1.0, "margin 0.25"),
    ("a constant default: any defined candidate wins", [1, 1, 1, 1], [4, 3, 2, 1], F1_UP, 0.02, True, None, -1.0,
     "-1.0 vs None"),
    ("a constant candidate never wins", [1, 2, 3, 4], [2, 2, 2, 2], F1_UP, 0.02, False, 1.0, None, "None vs 1.0"),
]


@pytest.mark.parametrize("case, default, candidate, f1, margin, chosen, rho_default, rho_candidate, says",
                         RANKS_BETTER_CASES, ids=[c[0] for c in RANKS_BETTER_CASES])
def test_ranks_better(case, default, candidate, f1, margin, chosen, rho_default, rho_candidate, says):
    better, before, after, reason = ranks_better(np.array(default, float), np.array(candidate, float), np.array(f1),
                                                 margin, "learned")
    assert (better, before, after) == (chosen, rho_default, rho_candidate)
    assert says in reason
