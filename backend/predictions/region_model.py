"""A project's learned region model: the probability that a shown region is right (kept by the annotator, moved or
not), learnt from the project's reviewed tasks, and the review score it gives a task.

The default review score (`backend.predictions.scoring.errors_review_score`) reads each region's chance of being right
from the agreement of the image and its mirror alone. A project that has reviewed tasks knows more: which of its
regions annotators kept. A logistic regression (scikit-learn, only to fit) of "kept" on each shown region's features:

| feature | value |
| --- | --- |
| fused | the two-view fused confidence: (a + b) / 2 x IoU when the mirror has it (note 1), else a / 2 |
| matched | 1 when the mirror has it, else 0 |
| score | a, the region's own confidence |
| log_area | log(box area / image area + 1e-6) |
| overlap | the largest IoU with another shown region of the task (any label; 0 alone) |
| crowd | log(1 + the task's shown regions) |
| label | one-hot over the labels seen in fitting (a label never seen: all zeros) |

(a: the region's confidence in the image, b: its match's in the mirror. Note 1: the mirror "has" a region when one
of its regions of the same label is matched to it one to one at IoU >= 0.5, `scoring.match_regions`.) The numeric
features are standardised with the fitting rows' mean and spread. A task's learned score is `errors_score(E)` =
1 / (1 + E) with E = the sum over its shown regions of 1 - P(kept), plus 1 - b / 2 for each mirror region the image
lacks (as in agreement errors); 0 when neither view has a region (reviewed first, as the default score does).

`select_region_model` decides whether a project uses it: out-of-fold learned scores of its reviewed tasks must rank
them by their pre-label's F1 (Spearman) better than the default score by `MARGIN`; `backend.jobs.calibration` then
fits the isotonic calibration on those out-of-fold scores. Stored as a JSON-able dict; applying it needs only NumPy.

The regions read are those of one control, the config's `primary_control` (a model's region is written once per
control: a box and a mask of the same object), as Label Studio holds them (`served_regions`: the same reading at
prediction time and, from the export, at fitting time), and the mirror's regions of that control's labels.

Boxes: float32 (N, 4) xyxy pixels of one image; `mirror`: the regions found on the image's mirror, mapped back
(`scoring.unmirror`), in the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from backend.core.detections import Detections, box_iou
from backend.core.ontology import Control, Ontology
from backend.core.sizes import Size
from backend.labelstudio.results import results_to_detections
from backend.predictions.scoring import errors_score, match_regions, ranks_better

FORMAT = "regions-logistic/1"
FEATURES = ("fused", "matched", "score", "log_area", "overlap", "crowd")
MIN_TASKS = 20  # reviewed tasks (with the mirror's regions recorded) before a project's model is considered
FOLDS = 5
MARGIN = 0.02  # Spearman the learned score must gain over the default one on the project's own reviewed tasks


PRIMARY_TAGS = ("RectangleLabels", "PolygonLabels", "BrushLabels")


class RegionModelError(ValueError):
    """Too few reviewed regions, one outcome only, or a malformed stored model."""


def primary_control(ontology: Ontology) -> Control | None:
    """The control whose regions the model reads: the config's first RectangleLabels, else PolygonLabels, else
    BrushLabels; None when it has none of them (no region model then)."""
    for tag in PRIMARY_TAGS:
        for control in ontology.controls:
            if control.tag == tag:
                return control
    return None


def served_regions(results: list[dict], control: Control, image_size: Size) -> Detections:
    """The regions of `control` among Label Studio results (a prediction's `result`), as Label Studio holds them:
    boxes (rectangles) or the boxes around masks (brush, polygon: one region per result), in pixels of
    `image_size`. Raises `RegionModelError` for results it cannot read."""
    mine = [r for r in results if isinstance(r, dict) and r.get("from_name") == control.name]
    if not mine:
        return Detections.empty(image_size)
    try:
        return results_to_detections(mine, image_size)
    except (ValueError, TypeError) as exc:
        raise RegionModelError(f"unreadable regions of {control.name!r}: {exc}") from exc


def of_labels(dets: Detections, control: Control) -> Detections:
    """The regions of `dets` whose label is one of `control`'s."""
    return dets.select(np.array([label in control.labels for label in dets.labels], bool))


def to_rows(dets: Detections) -> list[list]:
    """Regions → JSON-able rows [x1, y1, x2, y2 as fractions of the image's width / height (5 decimals), score
    (4 decimals), label] (how `backend.store.scores` keeps the mirror's regions)."""
    w, h = (max(float(v), 1.0) for v in dets.image_size)
    return [[round(float(x1) / w, 5), round(float(y1) / h, 5), round(float(x2) / w, 5), round(float(y2) / h, 5),
             round(float(score), 4), label] for (x1, y1, x2, y2), score, label in zip(dets.xyxy, dets.scores,
                                                                                      dets.labels)]


def from_rows(rows: list, image_size) -> Detections:
    """The inverse of `to_rows` at `image_size` (width, height in pixels); raises `RegionModelError` for rows it
    cannot read."""
    try:
        w, h = (float(v) for v in image_size)
        boxes = np.array([[r[0] * w, r[1] * h, r[2] * w, r[3] * h] for r in rows], np.float32).reshape(-1, 4)
        return Detections(boxes, np.array([float(r[4]) for r in rows], np.float32), tuple(str(r[5]) for r in rows),
                          image_size)
    except (TypeError, ValueError, IndexError) as exc:
        raise RegionModelError(f"unreadable mirror regions: {exc}") from exc


def region_features(served: Detections, mirror: Detections) -> tuple[np.ndarray, np.ndarray]:
    """(float64 (N, 6) rows of `FEATURES` for the N shown regions, float64 (M,) b / 2 of the M mirror regions the
    image lacks)."""
    pairs = {i: (j, iou) for i, j, iou in match_regions(served, mirror)}
    area = max(float(served.image_size.width) * float(served.image_size.height), 1.0)
    rows = np.zeros((len(served), len(FEATURES)), np.float64)
    overlaps = box_iou(served.xyxy, served.xyxy) if len(served) else np.zeros((0, 0))
    np.fill_diagonal(overlaps, 0.0)
    for i in range(len(served)):
        a = float(served.scores[i])
        j, iou = pairs.get(i, (None, 0.0))
        x1, y1, x2, y2 = (float(v) for v in served.xyxy[i])
        rows[i] = ((a + float(mirror.scores[j])) / 2 * iou if j is not None else a / 2, float(j is not None), a,
                   np.log(max(x2 - x1, 0.0) * max(y2 - y1, 0.0) / area + 1e-6), float(overlaps[i].max(initial=0.0)),
                   np.log1p(len(served)))
    matched = {j for j, _ in pairs.values()}
    alone = np.array([float(mirror.scores[j]) / 2 for j in range(len(mirror)) if j not in matched], np.float64)
    return rows, alone


@dataclass(frozen=True)
class RegionModel:
    """P(shown region kept) = sigmoid(coef . [standardised `FEATURES`, one-hot label] + intercept).

    labels: the label values of the one-hot part; mean / scale: float64 (6,) of the numeric features; coef: float64
    (6 + len(labels),); n_regions / n_tasks / n_kept: what it was fitted on.
    """

    labels: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    n_regions: int
    n_tasks: int
    n_kept: int

    @classmethod
    def fit(cls, tasks: Sequence[tuple[Detections, Detections, np.ndarray]], strength: float = 1.0) -> "RegionModel":
        """Fit on reviewed tasks [(shown regions, mirror regions mapped back, bool (N,) kept per shown region)];
        `strength`: scikit-learn's C (inverse L2 penalty). Raises `RegionModelError` when the regions are all kept
        or all not kept (or there are none)."""
        from sklearn.linear_model import LogisticRegression  # only fitting needs it

        rows = [region_features(served, mirror)[0] for served, mirror, _ in tasks]
        x = np.concatenate(rows) if rows else np.zeros((0, len(FEATURES)))
        kept = np.concatenate([np.asarray(k, bool).reshape(-1) for _, _, k in tasks]) if tasks else np.zeros(0, bool)
        if len(kept) != len(x):
            raise RegionModelError(f"{len(x)} shown regions but {len(kept)} outcomes")
        n_kept = int(kept.sum())
        if n_kept in (0, len(kept)):
            raise RegionModelError(f"{len(kept)} reviewed regions, {n_kept} kept: a region model needs both outcomes")
        labels = tuple(sorted({label for served, _, _ in tasks for label in served.labels}))
        mean, spread = x.mean(axis=0), x.std(axis=0)
        scale = np.where(spread > 1e-9, spread, 1.0)
        model = LogisticRegression(C=strength, max_iter=1000).fit(
            cls._design(x, [lab for served, _, _ in tasks for lab in served.labels], labels, mean, scale), kept)
        return cls(labels, mean, scale, model.coef_[0].astype(np.float64), float(model.intercept_[0]), len(kept),
                   len(tasks), n_kept)

    @staticmethod
    def _design(x: np.ndarray, region_labels: Sequence[str], labels: tuple[str, ...], mean: np.ndarray,
                scale: np.ndarray) -> np.ndarray:
        one_hot = np.array([[float(lab == name) for name in labels] for lab in region_labels], np.float64)
        return np.hstack([(x - mean) / scale, one_hot.reshape(len(x), len(labels))])

    def probabilities(self, served: Detections, mirror: Detections) -> np.ndarray:
        """float64 (N,): P(kept) of each shown region."""
        x, _ = region_features(served, mirror)
        if not len(x):
            return np.zeros(0, np.float64)
        z = self._design(x, served.labels, self.labels, self.mean, self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def expected_errors(self, served: Detections, mirror: Detections) -> float:
        """Sum over shown regions of 1 - P(kept) plus 1 - b / 2 per mirror region the image lacks (>= 0)."""
        _, alone = region_features(served, mirror)
        return float((1.0 - self.probabilities(served, mirror)).sum() + (1.0 - alone).sum())

    def score(self, served: Detections, mirror: Detections) -> float:
        """The learned review score in [0, 1]: 1 / (1 + `expected_errors`), 0 when neither view has a region."""
        if not len(served) and not len(mirror):
            return 0.0
        return errors_score(self.expected_errors(served, mirror))

    def to_dict(self) -> dict:
        return {"format": FORMAT, "features": list(FEATURES), "labels": list(self.labels),
                "mean": self.mean.tolist(), "scale": self.scale.tolist(), "coef": self.coef.tolist(),
                "intercept": self.intercept, "n_regions": self.n_regions, "n_tasks": self.n_tasks,
                "n_kept": self.n_kept}

    @classmethod
    def from_dict(cls, stored: dict) -> "RegionModel":
        """The inverse of `to_dict`; raises `RegionModelError` for anything else."""
        try:
            if stored["format"] != FORMAT or tuple(stored["features"]) != FEATURES:
                raise RegionModelError(f"unknown region model format {stored.get('format')!r}")
            labels = tuple(str(v) for v in stored["labels"])
            mean, scale = (np.asarray(stored[k], np.float64).reshape(-1) for k in ("mean", "scale"))
            coef = np.asarray(stored["coef"], np.float64).reshape(-1)
            if len(mean) != len(FEATURES) or len(scale) != len(FEATURES) or len(coef) != len(FEATURES) + len(labels):
                raise RegionModelError("region model arrays of the wrong length")
            if not (np.isfinite(mean).all() and np.isfinite(coef).all() and (scale > 0).all()):
                raise RegionModelError("region model values must be finite (scale > 0)")
            return cls(labels, mean, scale, coef, float(stored["intercept"]), int(stored["n_regions"]),
                       int(stored["n_tasks"]), int(stored["n_kept"]))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, RegionModelError):
                raise
            raise RegionModelError(f"malformed region model: {exc}") from exc


@dataclass(frozen=True)
class Reviewed:
    """One reviewed task as the selection reads it: its shown regions, the mirror's regions mapped back, bool (N,)
    kept per shown region, its pre-label's F1 against the annotation, and its default (raw) review score; for the
    count model (`backend.predictions.count_model`): the objects annotated (regions of the control) and the image's
    embedding recorded at prediction time (float32 (D,), None when none was)."""

    served: Detections
    mirror: Detections
    kept: np.ndarray
    f1: float
    raw_score: float
    annotated: int = 0
    embedding: np.ndarray | None = None

    @property
    def corrections(self) -> int:
        """The pre-label's false positives + false negatives on the control: shown regions not kept, plus annotated
        regions no shown one became (`annotated` - kept; 0 at least)."""
        kept = int(np.asarray(self.kept, bool).sum())
        return max(len(self.served) - kept, 0) + max(self.annotated - kept, 0)


def out_of_fold_scores(tasks: Sequence[Reviewed], folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """float64 (N,): each task's learned score from a model fitted on the other folds (random folds, `seed`).
    Raises `RegionModelError` when a fold's training tasks hold only one outcome."""
    order = np.random.default_rng(seed).permutation(len(tasks))
    fold_of = np.empty(len(tasks), int)
    fold_of[order] = np.arange(len(tasks)) % folds
    out = np.zeros(len(tasks), np.float64)
    for fold in range(folds):
        train = [(t.served, t.mirror, t.kept) for t, f in zip(tasks, fold_of) if f != fold]
        model = RegionModel.fit(train)
        for i in np.nonzero(fold_of == fold)[0]:
            out[i] = model.score(tasks[i].served, tasks[i].mirror)
    return out


def select_region_model(tasks: Sequence[Reviewed], min_tasks: int = MIN_TASKS, margin: float = MARGIN,
                        folds: int = FOLDS) -> tuple[RegionModel | None, np.ndarray | None, dict]:
    """(the model fitted on every task or None, the out-of-fold learned scores float64 (N,) or None, the evidence:
    {"score": "learned" | "default", "reason", "tasks", "spearman_default", "spearman_learned"}).

    The learned score is chosen when, over the reviewed tasks, its out-of-fold Spearman with the pre-labels' F1
    beats the default score's by at least `margin`."""
    evidence = {"score": "default", "reason": "", "tasks": len(tasks), "spearman_default": None,
                "spearman_learned": None}
    if len(tasks) < min_tasks:
        evidence["reason"] = f"{len(tasks)} reviewed tasks with both views recorded; a region model needs {min_tasks}"
        return None, None, evidence
    f1 = np.array([t.f1 for t in tasks], np.float64)
    try:
        learned = out_of_fold_scores(tasks, min(folds, len(tasks)))
        model = RegionModel.fit([(t.served, t.mirror, t.kept) for t in tasks])
    except RegionModelError as exc:
        evidence["reason"] = str(exc)
        return None, None, evidence
    better, default, gained, reason = ranks_better(np.array([t.raw_score for t in tasks], np.float64), learned, f1,
                                                   margin, "learned")
    evidence.update(spearman_default=default, spearman_learned=gained, reason=reason)
    if not better:
        return None, None, evidence
    evidence["score"] = "learned"
    return model, learned, evidence
