"""A project's count model (`backend.predictions.count_model`): the misses term and the score it gives (table-driven),
fitting and storage, and the selection against the default score on the project's own reviewed tasks."""

import json

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
    model, evidence = select_count_model(x, counts, np.zeros(60), shown, f1)
    assert model is not None and evidence["score"] == "count", evidence
    assert evidence["spearman_count"] > 0.5 and evidence["spearman_default"] is None  # a constant default score

    shown_all = counts.copy()  # everything found: the count adds nothing; F1 follows E only
    expected = np.random.default_rng(1).uniform(0, 2, 60)
    f1_e = 1 / (1 + expected)
    model, evidence = select_count_model(x, counts, expected, shown_all, f1_e)
    assert model is None and evidence["score"] == "default" and "no better" in evidence["reason"]

    model, evidence = select_count_model(x[:10], counts[:10], np.zeros(10), shown[:10], f1[:10])
    assert model is None and "needs 20" in evidence["reason"]
