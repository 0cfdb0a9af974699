"""A project's learned region model (`backend.predictions.region_model`): its features (table-driven), fitting,
storage, the selection against the default score, and its place in the calibration job and the predict path."""

import json

import numpy as np
import pytest

from backend.core.detections import Detections
from backend.jobs.calibration import (calibration_path, calibration_summary, fit_calibration, load_calibration,
                                      reviewed_views)
from backend.predictions.priority import TIE_BREAK, calibrated_score
from backend.predictions.region_model import (FEATURES, RegionModel, RegionModelError, Reviewed, from_rows,
                                              region_features, select_region_model, to_rows)
from backend.predictions.score_calibration import ScoreCalibration
from backend.predictions.tasks import TaskPrediction, mirror_regions
from backend.store.database import Database
from backend.store.scores import ScoreLog
from tests.review_fixtures import ONTOLOGY, prediction, regions, task

SIZE = (200, 100)
CAT = [20, 10, 60, 50]  # 40 x 40 of a 200 x 100 image
NEAR = [22, 10, 62, 50]  # IoU 38 / 42 with CAT
FAR = [150, 10, 190, 40]


def dets(boxes, scores, labels, size=SIZE) -> Detections:
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), scores, labels, size)


LOG_AREA = float(np.log(1600 / 20000 + 1e-6))
IOU_NEAR = 38 * 40 / (42 * 40)
# (case, served, mirror mapped back, feature rows, mirror-only halves)
FEATURE_CASES = [
    ("nothing anywhere", ([], [], []), ([], [], []), [], []),
    ("one cat in both views", ([CAT], [0.8], ["cat"]), ([NEAR], [0.6], ["cat"]),
     [[0.7 * IOU_NEAR, 1, 0.8, LOG_AREA, 0, np.log(2)]], []),
    ("the mirror sees a dog there", ([CAT], [0.8], ["cat"]), ([NEAR], [0.6], ["dog"]),
     [[0.4, 0, 0.8, LOG_AREA, 0, np.log(2)]], [0.3]),
    ("only the mirror sees it", ([], [], []), ([FAR], [0.5], ["cat"]), [], [0.25]),
    ("two overlapping regions", ([CAT, NEAR], [0.8, 0.4], ["cat", "dog"]), ([], [], []),
     [[0.4, 0, 0.8, LOG_AREA, IOU_NEAR, np.log(3)], [0.2, 0, 0.4, LOG_AREA, IOU_NEAR, np.log(3)]], []),
]


@pytest.mark.parametrize("case,served,mirror,rows,alone", FEATURE_CASES, ids=[c[0] for c in FEATURE_CASES])
def test_region_features(case, served, mirror, rows, alone):
    x, halves = region_features(dets(*served), dets(*mirror))
    assert x.shape == (len(rows), len(FEATURES))
    np.testing.assert_allclose(x, np.array(rows, np.float64).reshape(-1, len(FEATURES)), atol=1e-5)
    np.testing.assert_allclose(halves, alone, atol=1e-6)


def test_mirror_rows_round_trip_at_the_image_size():
    found = dets([CAT, FAR], [0.81234, 0.5], ["cat", "dog"])
    rows = to_rows(found)
    assert rows[0] == [0.1, 0.1, 0.3, 0.5, 0.8123, "cat"]
    back = from_rows(json.loads(json.dumps(rows)), (400, 200))  # the same image, read at twice the size
    np.testing.assert_allclose(back.xyxy, found.xyxy * 2, atol=1e-3)
    assert back.labels == ("cat", "dog") and tuple(back.image_size) == (400, 200)
    for bad in ([[0.1, 0.2]], [["x", 0, 1, 1, 0.5, "cat"]], "nonsense"):
        with pytest.raises(RegionModelError):
            from_rows(bad, SIZE)


def labelled_project(n: int, seed: int = 0, informative_raw: bool = False) -> list[Reviewed]:
    """n reviewed tasks of two cats each: regions the mirror agrees on are kept, lone ones deleted; the raw score is
    noise (or, with `informative_raw`, the task's F1 itself)."""
    rng, out = np.random.default_rng(seed), []
    for _ in range(n):
        agree = rng.uniform(size=2) < 0.6
        served = dets([CAT, FAR], rng.uniform(0.4, 0.9, 2), ["cat", "cat"])
        seen = int(agree.sum())
        mirror = dets([b for b, a in zip([NEAR, FAR], agree) if a], [0.7] * seen, ["cat"] * seen)
        kept = agree & (rng.uniform(size=2) < 0.9)
        f1 = 2 * kept.sum() / (2 + kept.sum())
        raw = f1 if informative_raw else float(rng.uniform())
        out.append(Reviewed(served, mirror, kept, float(f1), raw))
    return out


def test_a_fitted_model_reads_the_mirror_and_survives_storage():
    model = RegionModel.fit([(r.served, r.mirror, r.kept) for r in labelled_project(60)])
    agreed = model.probabilities(dets([CAT], [0.6], ["cat"]), dets([NEAR], [0.7], ["cat"]))
    alone = model.probabilities(dets([CAT], [0.6], ["cat"]), dets([], [], []))
    assert agreed[0] > 0.7 > 0.3 > alone[0]
    back = RegionModel.from_dict(json.loads(json.dumps(model.to_dict())))
    probe = (dets([CAT, FAR], [0.6, 0.9], ["cat", "mouse"]), dets([NEAR], [0.7], ["cat"]))  # mouse: a label never seen
    np.testing.assert_allclose(back.probabilities(*probe), model.probabilities(*probe))
    assert back.score(*probe) == pytest.approx(1 / (1 + model.expected_errors(*probe)))
    assert model.score(dets([], [], []), dets([], [], [])) == 0.0  # nothing found: reviewed first


@pytest.mark.parametrize("broken", [
    {},
    {"format": "other/1"},
    {"format": "regions-logistic/1", "features": list(FEATURES), "labels": [], "mean": [0] * 6, "scale": [1] * 6,
     "coef": [0] * 5, "intercept": 0, "n_regions": 1, "n_tasks": 1, "n_kept": 1},  # coef too short
    {"format": "regions-logistic/1", "features": list(FEATURES), "labels": [], "mean": [0] * 6, "scale": [0] * 6,
     "coef": [0] * 6, "intercept": 0, "n_regions": 1, "n_tasks": 1, "n_kept": 1},  # zero scale
])
def test_malformed_stored_models_are_refused(broken):
    with pytest.raises(RegionModelError):
        RegionModel.from_dict(broken)


def test_fitting_needs_both_outcomes():
    project = labelled_project(30)
    with pytest.raises(RegionModelError, match="both outcomes"):
        RegionModel.fit([(r.served, r.mirror, np.ones(len(r.served), bool)) for r in project])


@pytest.mark.parametrize("case,n,informative_raw,chosen", [
    ("too few reviewed tasks", 12, False, "default"),
    ("the raw score says nothing, the regions do", 80, False, "learned"),
    ("the raw score is the F1 itself", 80, True, "default"),
])
def test_the_learned_score_is_chosen_only_where_it_orders_reviewed_tasks_better(case, n, informative_raw, chosen):
    model, learned, evidence = select_region_model(labelled_project(n, informative_raw=informative_raw))
    assert evidence["score"] == chosen and evidence["tasks"] == n and evidence["reason"]
    assert (model is not None) == (chosen == "learned") == (learned is not None)
    if chosen == "learned":
        assert evidence["spearman_learned"] >= evidence["spearman_default"] + 0.02 and learned.shape == (n,)


B, C = [100, 100, 200, 200], [220, 40, 300, 120]  # pixels of the review fixtures' 400 x 300 image


def reviewed_export(log: ScoreLog, n: int, seed: int = 0, missed: bool = False) -> list[dict]:
    """n reviewed tasks of one cat whose raw score is noise: the cat was kept where the mirror saw it too, else
    relabelled; the mirror's regions recorded beside the raw score. `missed`: every annotation also draws a dog the
    pre-label missed (no task is accepted unchanged)."""
    rng, out = np.random.default_rng(seed), []
    for i in range(1, n + 1):
        seen = rng.uniform() < 0.5
        mirror = to_rows(dets([B] if seen else [C], [0.8], ["cat"], (400, 300)))
        log.record(3, "v1", {i: float(rng.uniform())}, "errors", {i: mirror})
        drawn = ([B, C], ["cat" if seen else "dog", "dog"]) if missed else ([B], ["cat"] if seen else ["dog"])
        out.append(task(i, regions(*drawn), [prediction(regions([B], ["cat"]), score=0.5)]))
    return out


def test_the_calibration_job_chooses_the_region_model_and_predictions_read_it(tmp_path):
    log = ScoreLog(Database(tmp_path / "state.sqlite"))
    export = reviewed_export(log, 60)
    from backend.review.export import read_export
    views = reviewed_views(read_export(export, ONTOLOGY), ONTOLOGY, log, 3)
    assert len(views) == 60 and all(r.kept.shape == (1,) for r, _ in views)
    assert {bool(r.kept[0]) for r, _ in views} == {True, False} and all(r.kept[0] == kept for r, kept in views)
    stored = fit_calibration(export, ONTOLOGY, log, project_id=3)
    assert stored["region_model"]["score"] == "learned", stored["region_model"]
    path = calibration_path(tmp_path, 3)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(stored))
    calibration, _ = load_calibration(tmp_path, 3)
    assert calibration.region_model is not None and calibration.region_model.n_tasks == 60
    served = dets([B], [0.6], ["cat"], (400, 300))
    agreed = calibration.region_model.score(served, dets([B], [0.8], ["cat"], (400, 300)))
    alone = calibration.region_model.score(served, dets([C], [0.8], ["cat"], (400, 300)))
    assert calibrated_score(0.5, calibration, agreed) > 0.8 > 0.2 > calibrated_score(0.5, calibration, alone)
    raw = calibration.raw  # a task without two views reads the raw score's own curve, not the learned one's
    assert raw is not None and abs(calibrated_score(0.9, calibration) - raw.apply(0.9)) <= TIE_BREAK


def test_where_every_reviewed_task_was_corrected_the_region_model_still_orders_them(tmp_path):
    log = ScoreLog(Database(tmp_path / "state.sqlite"))
    stored = fit_calibration(reviewed_export(log, 60, missed=True), ONTOLOGY, log, project_id=3)
    assert stored["accepted"] == 0 and stored["region_model"]["score"] == "learned", stored["region_model"]
    assert stored["calibration"]["probability"] is False and stored["calibration"]["raw"] is None
    assert "all 60 reviewed tasks were corrected" in stored["reason"] and "no probability" in stored["reason"]
    path = calibration_path(tmp_path, 3)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(stored))
    calibration, _ = load_calibration(tmp_path, 3)
    summary = calibration_summary(tmp_path, 3)
    assert summary["calibrated"] and not summary["probability"] and summary["reason"] == stored["reason"]
    served = dets([B], [0.6], ["cat"], (400, 300))
    agreed = calibration.region_model.score(served, dets([B], [0.8], ["cat"], (400, 300)))
    alone = calibration.region_model.score(served, dets([C], [0.8], ["cat"], (400, 300)))
    assert calibrated_score(0.5, calibration, agreed) == round(agreed, 6)  # the model's own score, served as is
    assert calibrated_score(0.5, calibration, alone) == round(alone, 6) < round(agreed, 6)
    assert calibrated_score(0.37, calibration) == 0.37  # a task the model cannot score: no raw curve, the raw score


def test_without_recorded_mirrors_the_calibration_stays_on_the_raw_score(tmp_path):
    log = ScoreLog(Database(tmp_path / "state.sqlite"))
    export = reviewed_export(log, 60)
    log.db.connect().execute("DELETE FROM prediction_mirrors")
    stored = fit_calibration(export, ONTOLOGY, log, project_id=3)
    assert stored["region_model"]["score"] == "default" and "0 reviewed tasks" in stored["region_model"]["reason"]
    assert stored["calibration"] and "region_model" not in stored["calibration"]


def test_mirror_regions_go_with_recorded_raw_scores_only():
    rows = [[0.1, 0.1, 0.3, 0.5, 0.8, "cat"]]
    predictions = [TaskPrediction(1, [], 0.5, raw_score=0.5, mirror=rows),
                   TaskPrediction(2, [], 0.5, raw_score=0.5),  # several images: no mirror rows
                   TaskPrediction(3, error="no image", mirror=rows),
                   TaskPrediction("x", [], 0.5, raw_score=0.5, mirror=rows)]
    assert mirror_regions(predictions) == {1: rows}


def test_prediction_and_fit_read_the_same_regions():
    """A config with RectangleLabels, BrushLabels, PolygonLabels and Choices gets each model region on every control:
    the model reads the primary control's (the rectangles) at prediction time from the results it writes, and at
    fitting time from Label Studio's export of them, the same way."""
    from backend.labelstudio.results import detections_to_results
    from backend.predictions.region_model import primary_control, served_regions
    from backend.review.export import read_regions
    from tests.review_fixtures import box_mask

    boxes = [B, C]
    found = Detections(np.array(boxes, np.float32), [0.9, 0.6], ["cat", "dog"], (400, 300),
                       np.stack([box_mask(b) for b in boxes]))
    results = detections_to_results(found, ONTOLOGY.controls, 1.0)
    control = primary_control(ONTOLOGY)
    assert control.tag == "RectangleLabels"
    at_predict = served_regions(results, control, found.image_size)
    exported = read_regions(json.loads(json.dumps(results)))
    at_fit = exported.select([c == control.name for c in exported.controls]).boxes
    assert len(exported) > 2 and len(at_predict) == 2
    np.testing.assert_allclose(at_predict.xyxy, at_fit.xyxy, atol=1e-3)
    np.testing.assert_allclose(at_predict.scores, at_fit.scores, atol=1e-4)
    assert at_predict.labels == at_fit.labels == ("cat", "dog")


def test_a_task_the_model_cannot_score_reads_the_raw_curve():
    raw_curve = ScoreCalibration(np.array([0.0, 1.0]), np.array([0.1, 0.9]), 40, 20)
    learned_curve = ScoreCalibration(np.array([0.0, 1.0]), np.array([0.3, 0.5]), 40, 20)
    model = RegionModel.fit([(r.served, r.mirror, r.kept) for r in labelled_project(30)])
    both = learned_curve.with_region_model(model, raw_curve)
    assert calibrated_score(0.5, both, learned=1.0) == calibrated_score(1.0, learned_curve)  # the learned curve
    assert calibrated_score(0.5, both) == calibrated_score(0.5, raw_curve)  # several images: the raw one's curve
    assert calibrated_score(0.5, learned_curve.with_region_model(model, None)) == 0.5  # no raw curve: raw
    stored = ScoreCalibration.from_dict(json.loads(json.dumps(both.to_dict())))
    assert stored.raw is not None and calibrated_score(0.5, stored) == calibrated_score(0.5, raw_curve)


def test_no_region_model_without_a_box_control(tmp_path):
    from backend.core.ontology import Ontology
    from backend.predictions.region_model import primary_control
    from tests.review_fixtures import CHOICE

    log = ScoreLog(Database(tmp_path / "state.sqlite"))
    export = reviewed_export(log, 30)
    assert primary_control(Ontology((CHOICE,))) is None
    from backend.review.export import read_export
    assert reviewed_views(read_export(export, ONTOLOGY), Ontology((CHOICE,)), log, 3) == []
