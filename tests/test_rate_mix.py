"""The rate mix (`backend.predictions.rate_mix`): the score it gives (table-driven), its selection on a project's
reviewed tasks against the score served without it, and the calibration job choosing it and predictions reading it."""

import json
from pathlib import Path

import numpy as np
import pytest

from backend.predictions.rate_mix import SHARE, TOLERANCE, rate_scores, select_rate_mix
from backend.predictions.scoring import errors_found

# (case, expected corrections E, units U, k, score = 1 / (1 + E / U + E / k))
SCORE_CASES = [
    ("nothing found: reviewed first", 0.0, 0.0, 10.0, 0.0),
    ("every unit right", 0.0, 3.0, 10.0, 1.0),
    ("one region, surely wrong", 1.0, 1.0, 10.0, 1 / 2.1),
    ("6 of 30 crowns doubtful, k 10", 6.0, 30.0, 10.0, 1 / 1.8),
    ("2 of 2 crowns doubtful, k 10: below the 30-crown tile", 2.0, 2.0, 10.0, 1 / 2.2),
    ("6 of 30 crowns doubtful, k 2", 6.0, 30.0, 2.0, 1 / 4.2),
    ("2 of 2 crowns doubtful, k 2: above the 30-crown tile", 2.0, 2.0, 2.0, 1 / 3.0),
    ("misses only (count model): every unit a miss", 3.0, 3.0, 5.0, 1 / 2.6),
]


@pytest.mark.parametrize("case, expected, units, k, score", SCORE_CASES, ids=[c[0] for c in SCORE_CASES])
def test_the_mixed_score(case, expected, units, k, score):
    assert rate_scores(np.array([expected]), np.array([units]), k)[0] == pytest.approx(score)


def _project(n: int, seed: int = 0):
    """(expected corrections, units, F1, corrections, served score) of `n` reviewed tasks: busy tiles (20-40 units,
    a fifth of them wrong) and sparse ones (1-3 units, most wrong), whose expected corrections read their true ones
    with noise. The served score 1 / (1 + E) puts the busy tiles first though the sparse ones have the lower F1."""
    rng = np.random.default_rng(seed)
    busy = rng.random(n) < 0.5
    units = np.where(busy, rng.integers(20, 41, n), rng.integers(1, 4, n)).astype(float)
    wrong = np.where(busy, rng.binomial(units.astype(int), 0.2), rng.binomial(units.astype(int), 0.7)).astype(float)
    f1 = np.where(units > 0, 2 * (units - wrong) / (2 * units - wrong + 1e-9), 1.0)
    expected = np.maximum(wrong + rng.normal(0, 0.5, n), 0)
    return expected, units, f1, wrong, 1 / (1 + expected)


def test_the_mix_is_chosen_where_it_ranks_by_f1_without_losing_the_corrections():
    from backend.predictions.scoring import spearman

    expected, units, f1, wrong, served = _project(80)
    k, scores, evidence = select_rate_mix(expected, units, f1, wrong, served)
    assert k is not None and evidence["score"] == "mixed" and evidence["k"] == k, evidence
    np.testing.assert_allclose(scores, rate_scores(expected, units, k))
    assert evidence["spearman_mixed"] == pytest.approx(spearman(scores, f1), abs=1e-4)
    assert evidence["spearman_mixed"] > evidence["spearman_default"] + 0.02
    assert evidence["errors_found_mixed"] >= evidence["errors_found_default"] - TOLERANCE
    assert evidence["errors_found_default"] == pytest.approx(errors_found(served, wrong, SHARE), abs=1e-4)


@pytest.mark.parametrize("case, change, reason", [
    ("too few reviewed tasks", lambda p: tuple(a[:12] for a in p), "12 reviewed tasks"),
    ("no pre-label needed a correction", lambda p: (p[0] * 0, p[1], p[2] * 0 + 1, p[3] * 0, p[4] * 0 + 1),
     "nothing to order"),
    ("every task as many units: the share orders as the corrections do",
     lambda p: (p[0], p[1] * 0 + 10, p[2], p[3], p[4]), "no better than the served score"),
    ("only share-heavy mixes, which lose the corrections", None, "every mix puts fewer"),
])
def test_the_mix_is_not_chosen(case, change, reason):
    project = _project(80)
    if change is None:  # the busy tiles hold most corrections; a mix that ranks by the share alone loses them
        k, scores, evidence = select_rate_mix(*project, ks=(1e6,))
    else:
        k, scores, evidence = select_rate_mix(*change(project))
    assert k is None and scores is None and evidence["score"] == "default", evidence
    assert reason in evidence["reason"]


from tests.test_count_model import BOXES  # noqa: E402 - four boxes of a 400 x 300 image


def mixed_export(log, n: int, seed: int = 0) -> list[dict]:
    """n reviewed tasks of three kinds, with the raw score as served and the mirror's regions recorded:
    busy: 4 cats shown, the mirror sees the first two (right), the other two it lacks are wrong (2 corrections,
    F1 2/3); sparse: 1 cat shown that the mirror lacks, wrong, and a cat it missed (2 corrections, F1 0); clean: 2
    cats shown, both in the mirror, right (accepted unchanged). The served score puts busy first (more doubtful
    regions); the sparse ones are the worse pre-labels."""
    from backend.predictions.region_model import to_rows
    from backend.predictions.scoring import errors_review_score
    from tests.review_fixtures import prediction, regions, task
    from tests.test_region_model import dets

    rng, out = np.random.default_rng(seed), []
    kinds = {"busy": ([0, 1, 2, 3], [0, 1], [0, 1]), "sparse": ([2], [], [0]), "clean": ([0, 1], [0, 1], [0, 1])}
    for i in range(1, n + 1):
        kind = ("busy", "sparse", "clean", "clean")[i % 4]
        shown, seen, truth = kinds[kind]
        scores = rng.uniform(0.6, 0.95, len(shown))
        served = dets([BOXES[j] for j in shown], scores, ["cat"] * len(shown), (400, 300))
        mirror = dets([BOXES[j] for j in seen], rng.uniform(0.6, 0.95, len(seen)), ["cat"] * len(seen), (400, 300))
        log.record(3, "v1", {i: errors_review_score([served, mirror])}, "errors", {i: to_rows(mirror)})
        out.append(task(i, regions([BOXES[j] for j in truth], ["cat"] * len(truth)),
                        [prediction(regions([BOXES[j] for j in shown], ["cat"] * len(shown), scores=scores))]))
    return out


def test_the_calibration_job_chooses_the_rate_mix_and_predictions_read_it(tmp_path):
    from backend.jobs.calibration import calibration_path, calibration_summary, fit_calibration, load_calibration
    from backend.predictions.priority import calibrated_score
    from backend.predictions.tasks import Predictor
    from backend.store.database import Database
    from backend.store.scores import ScoreLog
    from tests.review_fixtures import ONTOLOGY
    from tests.test_region_model import dets

    log = ScoreLog(Database(tmp_path / "state.sqlite"))
    stored = fit_calibration(mixed_export(log, 80), ONTOLOGY, log, project_id=3)
    mix = stored["rate_mix"]
    assert mix["score"] == "mixed" and mix["tasks"] == 80 and stored["calibration"]["rate_k"] == mix["k"], mix
    assert mix["spearman_mixed"] > mix["spearman_default"] and mix["errors_found_mixed"] >= 0.99 * mix[
        "errors_found_default"] - TOLERANCE
    path = calibration_path(tmp_path, 3)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(stored))
    calibration, _ = load_calibration(tmp_path, 3)
    assert calibration.rate_k == mix["k"] and calibration.raw is not None
    assert calibration_summary(tmp_path, 3)["rate_mix"]["score"] == "mixed"

    predictor = Predictor(None, None, None, Path(tmp_path), calibration)
    busy = dets(BOXES, [0.9] * 4, ["cat"] * 4, (400, 300)), dets(BOXES[:2], [0.9] * 2, ["cat"] * 2, (400, 300))
    sparse = dets(BOXES[2:3], [0.9], ["cat"], (400, 300)), dets([], [], [], (400, 300))
    served_busy, served_sparse = (predictor._expected(*views) for views in (busy, sparse))
    assert served_busy > served_sparse  # before the mix: the busy pre-label has more to correct
    mixed_busy, mixed_sparse = predictor._mixed(*busy, None), predictor._mixed(*sparse, None)
    assert mixed_sparse < mixed_busy  # with it: the worse pre-label first
    assert calibrated_score(0.5, calibration, mixed=mixed_sparse) < calibrated_score(0.5, calibration, mixed=mixed_busy)
    assert abs(calibrated_score(0.5, calibration) - calibration.raw.apply(0.5)) <= 0.001  # a task it cannot score


@pytest.mark.parametrize("rate_k, message", [(0, "positive"), (-3, "positive"), ("x", "malformed"), (True, "positive"),
                                             (float("inf"), "positive")])
def test_a_malformed_stored_rate_mix_is_refused(rate_k, message):
    from backend.predictions.score_calibration import CalibrationError, ScoreCalibration

    stored = {**ScoreCalibration.fit([0.1, 0.9] * 10, [False, True] * 10).to_dict(), "rate_k": rate_k}
    with pytest.raises(CalibrationError, match=message):
        ScoreCalibration.from_dict(stored)


def test_a_stored_rate_mix_round_trips():
    from backend.predictions.score_calibration import ScoreCalibration

    curve = ScoreCalibration.fit([0.1, 0.9] * 10, [False, True] * 10)
    mixed = curve.with_rate_mix(10, None, None, curve)
    again = ScoreCalibration.from_dict(json.loads(json.dumps(mixed.to_dict())))
    assert again.rate_k == 10.0 and again.reads_model and again.raw is not None
    assert "rate_k" not in curve.to_dict() and ScoreCalibration.from_dict(curve.to_dict()).rate_k is None
