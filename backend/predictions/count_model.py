"""A project's count model: how many objects a task's image holds, learnt from its reviewed tasks, and the review
score that adds the objects a pre-label seems to have missed.

The default review score (`backend.predictions.scoring.errors_review_score`) counts the corrections a pre-label's own
regions suggest: shown regions that may be wrong, and regions only the mirror found. An object neither view found
is invisible to it, so a task whose pre-label misses half its objects can look clean. A project that has reviewed
tasks knows how many objects its images hold: a ridge regression (scikit-learn, only to fit; alpha by generalised
cross-validation) of log(1 + objects annotated) on the image's embedding (`backend.adapters.embedder`, unit rows)
predicts that count for any task; what the pre-label shows below it is a likely miss:

    misses = max(predicted count - shown regions, 0)        score = errors_score(E + misses) = 1 / (1 + E + misses)

(E: the task's expected corrections: the region model's where the project chose it, else `scoring.agreement_errors`;
`backend.jobs.calibration`.) `select_count_model` decides whether a project uses it, as `select_region_model` does
for the region model: out-of-fold scores of its reviewed tasks must rank them by their pre-label's F1 (Spearman)
better than the score they are served without it (the raw score, or the region model's), by `MARGIN`. Stored as a
JSON-able dict; applying it needs only NumPy.

Embeddings: float32 (N, D) unit rows; counts: objects annotated per task (ints >= 0); shown: regions the pre-label
shows per task (ints >= 0); expected: E per task (floats >= 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.predictions.scoring import errors_score, ranks_better

MIN_TASKS = 20  # reviewed tasks a project needs before a count model is fitted
FOLDS = 5  # out-of-fold scores for the selection
MARGIN = 0.02  # Spearman the count score must gain over the default one on the project's own reviewed tasks
ALPHAS = tuple(float(a) for a in np.logspace(-2, 3, 12))  # ridge strengths tried (generalised cross-validation)


class CountModelError(ValueError):
    """The reviewed tasks cannot fit a count model (too few, or no spread in their counts)."""


def misses(predicted: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """float64 (N,): objects the count model expects beyond the shown regions, max(predicted - shown, 0)."""
    return np.maximum(np.asarray(predicted, np.float64) - np.asarray(shown, np.float64), 0.0)


def count_scores(expected: np.ndarray, predicted: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """float64 (N,) review scores in (0, 1]: `errors_score(expected + misses)`; lower = more to correct."""
    total = np.asarray(expected, np.float64) + misses(predicted, shown)
    return np.array([errors_score(value) for value in total], np.float64)


@dataclass(frozen=True)
class CountModel:
    """Ridge regression of log(1 + count) on the image embedding: `coef` float64 (D,), `intercept`, `alpha`."""

    coef: np.ndarray
    intercept: float
    alpha: float

    @classmethod
    def fit(cls, embeddings: np.ndarray, counts: np.ndarray) -> "CountModel":
        from sklearn.linear_model import RidgeCV  # only fitting needs it

        x, y = np.asarray(embeddings, np.float64), np.log1p(np.asarray(counts, np.float64))
        if x.ndim != 2 or len(x) != len(y):
            raise CountModelError(f"embeddings {x.shape} and counts {y.shape} do not pair up")
        if len(x) < 3 or np.ptp(y) == 0:
            raise CountModelError(f"{len(x)} reviewed tasks, every one with {int(np.expm1(y[0])) if len(y) else 0} "
                                  "objects: nothing to learn a count from")
        model = RidgeCV(alphas=ALPHAS).fit(x, y)
        return cls(np.asarray(model.coef_, np.float64), float(model.intercept_), float(model.alpha_))

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        """float64 (N,) expected object counts >= 0."""
        x = np.asarray(embeddings, np.float64).reshape(-1, len(self.coef))
        return np.maximum(np.expm1(x @ self.coef + self.intercept), 0.0)

    def to_dict(self) -> dict:
        return {"coef": [round(float(c), 7) for c in self.coef], "intercept": self.intercept, "alpha": self.alpha}

    @classmethod
    def from_dict(cls, data: dict) -> "CountModel":
        """The inverse of `to_dict`; `CountModelError` for anything else."""
        try:
            coef = np.asarray(data["coef"], np.float64).reshape(-1)
            intercept, alpha = float(data["intercept"]), float(data["alpha"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CountModelError(f"malformed count model: {exc!r}") from None
        if coef.size == 0 or not (np.isfinite(coef).all() and np.isfinite(intercept)):
            raise CountModelError("a count model needs finite coefficients")
        return cls(coef, intercept, alpha)


def out_of_fold_counts(embeddings: np.ndarray, counts: np.ndarray, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """float64 (N,): each task's count predicted by a model fitted on the other folds (tasks dealt at random)."""
    embeddings, counts = np.asarray(embeddings), np.asarray(counts)
    fold = np.random.default_rng(seed).permutation(len(counts)) % folds
    predicted = np.zeros(len(counts), np.float64)
    for k in range(folds):
        held = fold == k
        predicted[held] = CountModel.fit(embeddings[~held], counts[~held]).predict(embeddings[held])
    return predicted


def select_count_model(embeddings: np.ndarray, counts: np.ndarray, expected: np.ndarray, shown: np.ndarray,
                       f1: np.ndarray, min_tasks: int = MIN_TASKS, margin: float = MARGIN, folds: int = FOLDS,
                       default: np.ndarray | None = None) -> tuple[CountModel | None, np.ndarray | None, dict]:
    """(the model fitted on every reviewed task, or None; its out-of-fold count scores float64 (N,), or None; the
    evidence: {"score": "count" | "default", "reason", "tasks", "spearman_default", "spearman_count"}). Chosen when
    the out-of-fold count scores of the reviewed tasks rank them by F1 better than the score they are served without
    it by at least `margin`: `default` float (N,) (the raw score, or the region model's where chosen: both 0 for a
    pre-label with nothing found, reviewed first), else `errors_score(expected)`."""
    evidence = {"score": "default", "reason": "", "tasks": len(counts), "spearman_default": None,
                "spearman_count": None}
    if len(counts) < min_tasks:
        evidence["reason"] = f"{len(counts)} reviewed tasks with an embedding recorded; a count model needs {min_tasks}"
        return None, None, evidence
    try:
        predicted = out_of_fold_counts(embeddings, counts, min(folds, len(counts)))
        model = CountModel.fit(embeddings, counts)
    except CountModelError as exc:
        evidence["reason"] = str(exc)
        return None, None, evidence
    scored = count_scores(expected, predicted, shown)
    if default is None:
        default = np.array([errors_score(e) for e in expected])
    better, rho_default, gained, reason = ranks_better(np.asarray(default, np.float64), scored, f1, margin, "count")
    evidence.update(spearman_default=rho_default, spearman_count=gained, reason=reason)
    if not better:
        return None, None, evidence
    evidence["score"] = "count"
    return model, scored, evidence
