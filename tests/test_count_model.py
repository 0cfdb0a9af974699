"""A project's count model (`backend.predictions.count_model`): the misses term and the score it gives (table-driven),
fitting and storage, and the selection against the default score on the project's own reviewed tasks."""

import json
from pathlib import Path

import numpy as np
import pytest

from backend.predictions.count_model import (CountModel, CountModelError, count_scores, misses, out_of_fold_counts,
                                             select_count_model)

# (case, expected corrections E, predicted count, shown regions, misses, score = 1 / (1 + E + misses))
SCORE_CASES = [
    ("as many shown as expected", 0.0, 3.0, 3, 0.0, 1.0),
    ("more shown than expected: no misses (E holds the wrong ones)", 0.5, 1.0, 4, 0.0, 1 / 1.5),
    ("two objects expected beyond the shown one", 0.0, 3.0, 1, 2.0, 1 / 3),
    ("a fraction of an object", 1.0, 2.5, 2, 0.5, 1 / 2.5),
    ("nothing shown, nothing expected", 0.0, 0.0, 0, 0.0, 1.0),
    ("nothing shown, four expected", 0.0, 4.0, 0, 4.0, 0.2),
]


@pytest.mark.parametrize("case, expected, predicted, shown, missed, score", SCORE_CASES, ids=[c[0] for c in SCORE_CASES])
def test_misses_and_the_score_they_give(case, expected, predicted, shown, missed, score):
    assert misses(np.array([predicted]), np.array([shown]))[0] == pytest.approx(missed)
    assert count_scores(np.array([expected]), np.array([predicted]), np.array([shown]))[0] == pytest.approx(score)


def _project(n: int, seed: int = 0):
    """Embeddings whose first two directions carry the object count (as an embedder's would, loosely), unit rows."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 9, n)
    x = rng.normal(0, 0.3, (n, 16))
    x[:, 0] += np.log1p(counts)
    x[:, 1] -= 0.5 * np.log1p(counts)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), counts


def test_the_fitted_model_predicts_counts_and_round_trips_through_json():
    x, counts = _project(120)
    model = CountModel.fit(x[:80], counts[:80])
    predicted = model.predict(x[80:])
    assert predicted.shape == (40,) and (predicted >= 0).all()
    assert np.corrcoef(predicted, counts[80:])[0, 1] > 0.8
    stored = CountModel.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_allclose(stored.predict(x[80:]), predicted, rtol=1e-5)
    oof = out_of_fold_counts(x, counts)
    assert oof.shape == (120,) and np.corrcoef(oof, counts)[0, 1] > 0.7


@pytest.mark.parametrize("counts, message", [([2] * 10, "nothing to learn"), ([1, 2], "nothing to learn")])
def test_a_count_model_needs_spread(counts, message):
    x = np.eye(len(counts), 4, dtype=np.float32)
    with pytest.raises(CountModelError, match=message):
        CountModel.fit(x, np.array(counts))


def test_the_count_score_is_chosen_only_where_it_ranks_the_reviewed_tasks_better():
    """Pre-labels that miss objects in proportion to the count, while the default score sees nothing wrong (E = 0):
    the count score ranks them by F1; where the misses do not follow the count it is not chosen."""
    x, counts = _project(60)
    shown = np.minimum(counts, 2)  # the pipeline shows at most two regions
    f1 = np.where(counts > 0, 2 * shown / np.maximum(shown + counts, 1), 1.0)
    model, scored, evidence = select_count_model(x, counts, np.zeros(60), shown, f1)
    assert model is not None and evidence["score"] == "count", evidence
    assert scored.shape == (60,) and ((scored > 0) & (scored <= 1)).all()
    assert evidence["spearman_count"] > 0.5 and evidence["spearman_default"] is None  # a constant default score

    shown_all = counts.copy()  # everything found: the count adds nothing; F1 follows E only
    expected = np.random.default_rng(1).uniform(0, 2, 60)
    f1_e = 1 / (1 + expected)
    model, _, evidence = select_count_model(x, counts, expected, shown_all, f1_e)
    assert model is None and evidence["score"] == "default" and "no better" in evidence["reason"]

    model, _, evidence = select_count_model(x[:10], counts[:10], np.zeros(10), shown[:10], f1[:10])
    assert model is None and "needs 20" in evidence["reason"]


# (case, the score served without the count model: None = errors_score(E), "noise" = a served score that says
# nothing, "empty first" = 0 where nothing was found, else errors_score(E); chosen)
BASELINES = [
    ("against errors_score(E), which sees nothing wrong", None, True),
    ("against a served score that says nothing", "noise", True),
    ("against the raw score, nothing found reviewed first", "empty first", False),
]


@pytest.mark.parametrize("case,default,chosen", BASELINES, ids=[c[0] for c in BASELINES])
def test_the_count_score_must_beat_the_score_served_without_it(case, default, chosen):
    """A third of the pre-labels found nothing (F1 0, E 0); the others show every object (F1 1). errors_score(E) is
    1 for all: the count score, which reads the missed objects, beats it. The raw score as served (0 where nothing
    was found) already puts those first: the count model adds nothing and is not chosen."""
    x, counts = _project(60)
    counts = np.maximum(counts, 1)
    shown = np.where(np.arange(60) % 3 == 0, 0, counts)
    f1 = (shown > 0).astype(float)
    served = {None: None, "noise": np.random.default_rng(2).uniform(size=60),
              "empty first": np.where(shown > 0, 1.0, 0.0)}[default]
    model, _, evidence = select_count_model(x, counts, np.zeros(60), shown, f1, default=served)
    assert (model is not None) == chosen and evidence["score"] == ("count" if chosen else "default"), evidence


@pytest.mark.parametrize("stored, message", [({"coef": [], "intercept": 0, "alpha": 1}, "finite"),
                                             ({"coef": [1, "x"], "intercept": 0, "alpha": 1}, "malformed"),
                                             ({"coef": [1.0], "alpha": 1}, "malformed"),
                                             ({"coef": [float("nan")], "intercept": 0, "alpha": 1}, "finite")])
def test_a_malformed_stored_count_model_is_refused(stored, message):
    with pytest.raises(CountModelError, match=message):
        CountModel.from_dict(stored)


BOXES = [[100, 100, 200, 200], [220, 40, 300, 120], [20, 200, 80, 280], [300, 200, 380, 280]]  # of a 400 x 300 image


def _embedding(k: int, dims: int = 16) -> np.ndarray:
    """A unit row whose direction in its first two dimensions turns with the count k."""
    vector = np.zeros(dims)
    vector[:2] = np.cos(0.35 * k), np.sin(0.35 * k)
    return vector


def counted_export(log, n: int, seed: int = 0, dims: int = 16, fewest: int = 1) -> list[dict]:
    """n reviewed tasks whose pre-label shows one cat (kept; the mirror sees it too: the default score finds nothing
    to correct) while the image holds `fewest`-4 cats (the annotation has them all); the image embedding recorded
    with the raw score carries the count, loosely."""
    from backend.predictions.region_model import to_rows
    from tests.review_fixtures import prediction, regions, task
    from tests.test_region_model import dets

    rng, out = np.random.default_rng(seed), []
    for i in range(1, n + 1):
        k = int(rng.integers(fewest, 5))
        vector = _embedding(k, dims) + rng.normal(0, 0.03, dims)
        mirror = to_rows(dets([BOXES[0]], [0.9], ["cat"], (400, 300)))
        log.record(3, "v1", {i: float(rng.uniform(0.4, 0.6))}, "errors", {i: mirror},
                   {i: (vector / np.linalg.norm(vector)).astype(np.float32)})
        out.append(task(i, regions(BOXES[:k], ["cat"] * k), [prediction(regions([BOXES[0]], ["cat"]), score=0.5)]))
    return out


def test_the_calibration_job_chooses_the_count_model_and_predictions_read_it(tmp_path):
    from pathlib import Path

    from backend.jobs.calibration import calibration_path, calibration_summary, fit_calibration, load_calibration
    from backend.predictions.priority import calibrated_score
    from backend.predictions.tasks import Predictor
    from backend.store.database import Database
    from backend.store.scores import ScoreLog
    from tests.review_fixtures import ONTOLOGY
    from tests.test_region_model import dets

    log = ScoreLog(Database(tmp_path / "state.sqlite"))
    export = counted_export(log, 80)
    stored = fit_calibration(export, ONTOLOGY, log, project_id=3)
    assert stored["count_model"]["score"] == "count", stored["count_model"]
    assert stored["count_model"]["tasks"] == 80 and stored["calibration"]["count_model"]
    from scipy.stats import spearmanr

    from backend.jobs.calibration import reviewed_views
    from backend.review.export import read_export
    views = [r for r, _ in reviewed_views(read_export(export, ONTOLOGY), ONTOLOGY, log, 3)]
    served = spearmanr([r.raw_score for r in views], [r.f1 for r in views]).statistic  # what it had to beat: as served
    assert stored["count_model"]["spearman_default"] == pytest.approx(served, abs=1e-4)
    path = calibration_path(tmp_path, 3)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(stored))
    calibration, _ = load_calibration(tmp_path, 3)
    assert calibration.count_model is not None and calibration.raw is not None
    assert calibration_summary(tmp_path, 3)["count_model"]["score"] == "count"

    predictor = Predictor(None, None, None, Path(tmp_path), calibration)
    served, mirror = dets([BOXES[0]], [0.9], ["cat"], (400, 300)), dets([BOXES[0]], [0.9], ["cat"], (400, 300))
    alone = predictor._counted(served, mirror, _embedding(1).astype(np.float32))
    crowded = predictor._counted(served, mirror, _embedding(4).astype(np.float32))
    assert alone > crowded  # the same pre-label, on an image that holds more cats: more to correct, reviewed first
    assert calibrated_score(0.5, calibration, counted=alone) > calibrated_score(0.5, calibration, counted=crowded)
    assert predictor._counted(served, mirror, None) is None  # no embedding: the raw score's own curve
    assert predictor._counted(served, mirror, np.ones(8, np.float32)) is None  # another embedder's size
    assert abs(calibrated_score(0.5, calibration) - calibration.raw.apply(0.5)) <= 0.001


def test_where_every_reviewed_image_held_more_cats_the_count_model_still_orders_them(tmp_path):
    from backend.jobs.calibration import calibration_path, calibration_summary, fit_calibration, load_calibration
    from backend.predictions.priority import calibrated_score
    from backend.predictions.tasks import Predictor
    from backend.store.database import Database
    from backend.store.scores import ScoreLog
    from tests.review_fixtures import ONTOLOGY
    from tests.test_region_model import dets

    log = ScoreLog(Database(tmp_path / "state.sqlite"))
    stored = fit_calibration(counted_export(log, 80, fewest=2), ONTOLOGY, log, project_id=3)
    assert stored["accepted"] == 0 and stored["count_model"]["score"] == "count", stored["count_model"]
    assert stored["calibration"]["probability"] is False and "no probability" in stored["reason"]
    path = calibration_path(tmp_path, 3)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(stored))
    calibration, _ = load_calibration(tmp_path, 3)
    assert calibration_summary(tmp_path, 3)["probability"] is False
    predictor = Predictor(None, None, None, Path(tmp_path), calibration)
    served = dets([BOXES[0]], [0.9], ["cat"], (400, 300))
    two, four = (predictor._counted(served, served, _embedding(k).astype(np.float32)) for k in (2, 4))
    assert calibrated_score(0.5, calibration, counted=two) == round(two, 6) > round(four, 6)


def test_without_recorded_embeddings_no_count_model(tmp_path):
    from backend.jobs.calibration import fit_calibration
    from backend.store.database import Database
    from backend.store.scores import ScoreLog
    from tests.review_fixtures import ONTOLOGY

    log = ScoreLog(Database(tmp_path / "state.sqlite"))
    export = counted_export(log, 40)
    log.db.connect().execute("DELETE FROM prediction_embeddings")
    stored = fit_calibration(export, ONTOLOGY, log, project_id=3)
    assert stored["count_model"]["score"] == "default" and "0 reviewed tasks" in stored["count_model"]["reason"]
    assert not (stored["calibration"] or {}).get("count_model")


def test_embeddings_are_recorded_with_mirror_regions_only(tmp_path):
    from backend.predictions.tasks import TaskPrediction, image_embeddings
    from backend.store.database import Database
    from backend.store.scores import ScoreLog

    rows, vector = [[0.1, 0.1, 0.3, 0.5, 0.8, "cat"]], np.linspace(-1, 1, 8).astype(np.float32)
    predictions = [TaskPrediction(1, [], 0.5, raw_score=0.5, mirror=rows, embedding=vector),
                   TaskPrediction(2, [], 0.5, raw_score=0.5, embedding=vector),  # no mirror: not fitted on
                   TaskPrediction(3, error="no image", mirror=rows, embedding=vector)]
    assert list(image_embeddings(predictions)) == [1]
    log = ScoreLog(Database(tmp_path / "state.sqlite"))
    log.record(3, "v1", {1: 0.5}, "errors", {1: rows}, image_embeddings(predictions))
    stored = log.get_embeddings(3, "v1", [1, 2], "errors")
    assert list(stored) == [1] and stored[1].dtype == np.float32
    np.testing.assert_allclose(stored[1], vector, atol=1e-3)  # kept as float16
    assert log.get_embeddings(3, "v1", [1], "mirror") == {}  # another mode's
