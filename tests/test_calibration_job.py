"""A project's review-score calibration: reviewed tasks read from a Label Studio export (table-driven outcomes),
raw scores from the service's own record, the fit stored and applied to new predictions."""

import json

import numpy as np
import pytest

from backend.jobs import calibration as calibration_job
from backend.jobs.calibration import (calibration_due, calibration_path, fit_calibration, load_calibration,
                                      model_curve, refresh_calibration, reviewed_outcomes)
from backend.predictions.score_calibration import CalibrationError, ScoreCalibration
from backend.predictions.priority import TIE_BREAK, calibrated_score
from backend.store.database import Database
from backend.store.scores import ScoreLog
from tests.review_fixtures import ONTOLOGY, prediction, regions, task

B, C = [100, 100, 200, 200], [220, 40, 300, 120]

OUTCOMES = [
    # name, predicted (boxes, labels), annotated (boxes, labels), accepted unchanged
    ("kept as predicted", ([B], ["cat"]), ([B], ["cat"]), True),
    ("nothing predicted, nothing drawn", ([], []), ([], []), True),
    ("box moved (adjusted)", ([B], ["cat"]), ([[110, 100, 210, 200]], ["cat"]), False),
    ("relabelled", ([B], ["cat"]), ([B], ["dog"]), False),
    ("one of two deleted", ([B, C], ["cat", "dog"]), ([B], ["cat"]), False),
    ("one drawn by hand", ([B], ["cat"]), ([B, C], ["cat", "dog"]), False),
]


@pytest.fixture
def scores(tmp_path):
    return ScoreLog(Database(tmp_path / "state.sqlite"))


@pytest.mark.parametrize("name,predicted,annotated,accepted", OUTCOMES, ids=[c[0] for c in OUTCOMES])
def test_accepted_unchanged_means_every_region_kept(scores, name, predicted, annotated, accepted):
    scores.record(3, "v1", {1: 0.7})
    export = [task(1, regions(*annotated), [prediction(regions(*predicted), score=0.7)])]
    assert reviewed_outcomes(export, ONTOLOGY, scores, project_id=3) == ([0.7], [accepted])


def test_raw_scores_come_from_the_record_and_unreviewed_tasks_are_left_out(scores):
    scores.record(3, "v1", {1: 0.25, 2: 0.5, 3: 0.5})  # raw scores (Label Studio holds calibrated ones)
    export = [task(1, regions([B], ["cat"]), [prediction(regions([B], ["cat"]), score=0.9)]),
              task(4, regions([B], ["cat"]), [prediction(regions([B], ["cat"]), score=0.9)]),  # no raw score
              task(2, None, [prediction(regions([B], ["cat"]), score=0.5)]),  # not annotated
              task(3, regions([B], ["cat"]), [prediction(regions([B], ["cat"]), score=0.5,
                                                         created="2026-03-05T00:00:00Z")])]  # predicted after
    assert reviewed_outcomes(export, ONTOLOGY, scores, project_id=3) == ([0.25], [True])


def reviewed_project(log: ScoreLog, n: int, seed: int = 0, mode: str = "errors") -> list[dict]:
    """n reviewed tasks (raw scores recorded in `log`): the higher the score, the likelier the pre-label was kept."""
    rng, out = np.random.default_rng(seed), []
    for i in range(1, n + 1):
        score = float(rng.uniform())
        log.record(3, "v1", {i: score}, mode)
        kept = rng.uniform() < score
        out.append(task(i, regions([B], ["cat"] if kept else ["dog"]), [prediction(regions([B], ["cat"]), score=score)]))
    return out


def test_fit_store_and_apply(scores, tmp_path):
    stored = fit_calibration(reviewed_project(scores, 200), ONTOLOGY, scores, project_id=3)
    assert stored["reviewed"] == 200 and 60 < stored["accepted"] < 140 and stored["calibration"]
    path = calibration_path(tmp_path, 3)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(stored))
    calibration, age = load_calibration(tmp_path, 3)
    assert isinstance(calibration, ScoreCalibration) and 0 <= age < 60
    low, high = calibrated_score(0.1, calibration), calibrated_score(0.9, calibration)
    assert low < 0.35 < 0.65 < high  # near P(kept | score) = score
    assert abs(high - calibration.apply(0.9)) <= TIE_BREAK


def test_too_few_reviewed_tasks_leave_scores_raw(scores, tmp_path):
    stored = fit_calibration(reviewed_project(scores, 12), ONTOLOGY, scores, project_id=3)
    assert stored["calibration"] is None and "at least 20" in stored["reason"]
    assert load_calibration(tmp_path, 3) == (None, float("inf"))
    assert calibrated_score(0.42, None) == 0.42


# (case, out-of-fold model scores, accepted unchanged, probability fitted | "order only" | refused)
MODEL_CURVES = [
    ("both outcomes: a fitted probability", np.linspace(0, 1, 30), np.arange(30) >= 15, "probability"),
    ("every task corrected: the model's order", np.linspace(0, 1, 30), np.zeros(30, bool), "order only"),
    ("every task accepted: the model's order", np.linspace(0, 1, 30), np.ones(30, bool), "order only"),
    ("too few tasks for either", np.linspace(0, 1, 12), np.zeros(12, bool), "refused"),
]


@pytest.mark.parametrize("case,learned,accepted,outcome", MODEL_CURVES, ids=[c[0] for c in MODEL_CURVES])
def test_a_chosen_model_orders_tasks_even_where_no_probability_can_be_fitted(case, learned, accepted, outcome):
    if outcome == "refused":
        with pytest.raises(CalibrationError, match="at least 20"):
            model_curve(learned, list(accepted))
        return
    curve, why = model_curve(learned, list(accepted))
    assert curve.probability == (outcome == "probability") and bool(why) == (outcome == "order only")
    served = [calibrated_score(x, curve) for x in learned]
    assert served == sorted(served) and (outcome == "probability" or served == [round(x, 6) for x in learned])
    if outcome == "order only":
        assert "no probability of acceptance" in why and "both outcomes" in why


def test_ties_on_a_calibration_step_keep_the_raw_order():
    step = ScoreCalibration(np.array([0.0, 0.5, 1.0]), np.array([0.2, 0.2, 0.8]), 40, 20)
    assert calibrated_score(0.1, step) < calibrated_score(0.4, step) < calibrated_score(0.6, step)
    assert 0 <= calibrated_score(-3, step) <= calibrated_score(7, step) <= 1


def test_a_calibration_fits_and_serves_one_review_score_mode(scores, tmp_path):
    """Raw scores of different review_score modes are different scales: a calibration fitted on one is not applied
    to the other, and a refit reads only the current mode's raw scores."""
    stored = fit_calibration(reviewed_project(scores, 200, mode="mirror"), ONTOLOGY, scores, project_id=3, mode="mirror")
    assert stored["review_score"] == "mirror" and stored["calibration"]
    path = calibration_path(tmp_path, 3)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(stored))
    assert isinstance(load_calibration(tmp_path, 3, "mirror")[0], ScoreCalibration)
    assert load_calibration(tmp_path, 3, "errors") == (None, float("inf"))
    assert fit_calibration(reviewed_project(scores, 200, mode="mirror"), ONTOLOGY, scores, 3, mode="errors")[
        "reviewed"] == 0  # only mirror scores recorded
    del stored["review_score"]  # written before modes were kept apart: mirror, the default then
    path.write_text(json.dumps(stored))
    assert load_calibration(tmp_path, 3, "errors")[0] is None
    assert isinstance(load_calibration(tmp_path, 3, "mirror")[0], ScoreCalibration)


def test_raw_scores_are_kept_per_mode(scores):
    scores.record(3, "v1", {1: 0.7}, "errors")
    scores.record(3, "v1", {1: 0.2}, "mirror")
    assert scores.get(3, "v1", [1], "errors") == {1: 0.7} and scores.get(3, "v1", [1], "mirror") == {1: 0.2}
    assert scores.get(3, "v1", [1], "confidence") == {}


DUE = [
    # name, age (s; inf: none of this mode), annotated at the last fit, annotated now, refitted
    ("fresh, nothing new", 10, 40, 45, False),
    ("older than the refresh age", 4000, 40, 40, True),
    ("never fitted in this mode", float("inf"), None, None, True),
    ("annotations doubled", 10, 40, 80, True),
    ("grown, not doubled", 10, 40, 79, False),
    ("first fit had none, now enough to calibrate", 10, 0, 20, True),
    ("first fit had none, still too few", 10, 0, 19, False),
    ("not recorded at the last fit (older file), enough now", 10, None, 25, True),
    ("count unknown now: age alone decides", 10, 0, None, False),
]


@pytest.mark.parametrize("name,age,then,now,due", DUE, ids=[c[0] for c in DUE])
def test_a_calibration_is_refitted_when_old_or_once_the_annotations_have_doubled(name, age, then, now, due):
    assert calibration_due(age, 3600, then, now) is due


def test_a_predict_job_refits_as_soon_as_the_project_has_the_reviews_for_it(scores, tmp_path, monkeypatch):
    """A project calibrated at its first job (no reviews) gets its calibration once it has 20+ reviewed tasks, not
    an hour later; later refits wait until the annotated tasks double again. One export per refit."""
    project, exports = reviewed_project(scores, 60), []

    def export(connection, project_id, all_tasks=True):
        exports.append(project_id)
        return project[:annotated]
    monkeypatch.setattr(calibration_job, "export_for_review", export)
    calibration_path(tmp_path, 3).parent.mkdir(parents=True)
    for annotated, exported, calibrated in [(0, 1, False), (10, 1, False), (24, 2, True), (40, 2, True),
                                            (48, 3, True), (60, 3, True)]:
        calibration = refresh_calibration(None, tmp_path, scores, 3, ONTOLOGY, 3600, "errors", annotated=annotated)
        assert (len(exports), calibration is not None) == (exported, calibrated), annotated
    assert json.loads(calibration_path(tmp_path, 3).read_text())["annotated"] == 48
