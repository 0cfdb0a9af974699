"""Suspicious annotations, ranked: where the model disagrees with the submitted annotation and is usually right.

For every task with a submitted annotation (`Task.chosen`) and a prediction, one reference prediction is used:
the latest prediction the model made without having trained on the task (`out_of_sample`, by default: created no
later than the annotation, so the annotation did not exist when the model ran), else the latest prediction (its
entries say `"out_of_sample": false`). Regions are compared per control (`from_name`).

Every annotated region (label L) gets one entry, of the first kind that applies, then possibly replaced by a
`loose_box` entry of higher score; every prediction region not used by those and not covered gets a
`possibly_missed` entry. Entries scoring below `min_score` (0.05) are dropped. An annotated region is in one entry;
a prediction region named by an annotated region's entry (`other_region`) gets no entry of its own.

| kind | candidate | score |
| --- | --- | --- |
| possibly_swapped | a prediction of label M != L on the box (IoU >= 0.5) that supports no other annotated region | `(1 - B) * max(R_task, P(M, s_M))` |
| loose_box (misplaced) | else: a prediction of label L next to it (0.1 <= IoU < 0.5) scoring above its support | `(1 - B) * R_task * (1 - u)` |
| possibly_spurious | else | `(1 - B) * R_task * (1 - u)` |
| loose_box (loose fit) | its best same-label support overlaps it at IoU u < 0.75 | `P(L, s) * clip((U_L - u) / U_L, 0, 1)` |
| possibly_missed | prediction region (label L, score s) no annotated region (any label) overlaps with IoU >= 0.3 | `P(L, s)` |

- support `s_L`: the highest score of a label-L prediction region overlapping the annotated region with IoU >= 0.5
  (0 if none); `B = P(L, s_L)` (0 without support): how much the model believes the annotation.
- `P(L, s)`: the model's precision at score s for label L on this project: an isotonic (monotone) fit of
  "prediction region matched one-to-one (greedy by IoU, >= 0.5) by an annotated region of its label" against the
  score, over every reference prediction (per label with >= 20 predicted regions, else all labels pooled; the
  score itself when nothing can be fitted).
- `R_task = (m + k R_L) / (n + k)`: the model's recall on the task's other n annotated regions of the control (m of
  them supported), shrunk towards its recall `R_L` for the label over the project (share of annotated L regions
  supported): "where the model is otherwise reliable". The strength k is estimated from the project
  (`recall_prior_strength`, empirical Bayes): small when tasks truly differ in how well the model does, large when
  their recalls differ no more than chance (20 regions per task leave a recall of 0.5 uncertain by +-0.11).
- `u`: the IoU of the prediction region (any label) that overlaps the annotated region most (0 if none): the
  closer the model's nearest box, the likelier the annotation marks a real object, whatever its label (on the
  label-error benchmark `1 - u` tells injected shifted and spurious boxes from the others at ROC AUC 0.81, the
  support score alone at 0.74).
- `s_M`: the score of the other-label prediction with the highest `P(M, s_M)`.
- `U_L`: median IoU of the one-to-one matched same-label pairs of label L (how tightly the model's boxes usually
  fit; 0.8 when there are none).

Links: `<LS>/projects/N/data?task=ID`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import numpy as np

from backend.review.export import Prediction, Regions, Task
from backend.review.matching import MATCH_IOU, greedy_pairs, region_iou

COVER_IOU = 0.3
PAIR_MIN_IOU = 0.1
LOOSE_IOU = 0.75
TYPICAL_IOU = 0.8
RECALL_PRIOR = 3.0       # prior strength when the tasks are too few to estimate it (`recall_prior_strength`)
MAX_RECALL_PRIOR = 100.0
MIN_REGIONS_PER_LABEL = 20
KINDS = ("possibly_missed", "possibly_spurious", "possibly_swapped", "loose_box")


def task_link(ls_url: str, project_id: int, task_id: int) -> str:
    """The task in Label Studio's Data Manager: `<LS>/projects/N/data?task=ID`."""
    return f"{ls_url.rstrip('/')}/projects/{int(project_id)}/data?task={int(task_id)}"


def made_before_annotation(task: Task, prediction: Prediction) -> bool | None:
    """True if the prediction was created no later than the task's chosen annotation (so the model that made it
    cannot have trained on that annotation); None when either time is missing."""
    annotation = task.chosen
    if annotation is None or annotation.created_at is None or prediction.created_at is None:
        return None
    return prediction.created_at <= annotation.created_at


def reference_prediction(task: Task, out_of_sample: Callable[[Task, Prediction], bool | None]
                         ) -> tuple[Prediction | None, bool | None]:
    """(prediction to compare with, whether it is out of sample): the latest out-of-sample prediction, else the
    latest prediction (export order breaks ties of creation time)."""
    if not task.predictions:
        return None, None
    order = sorted(range(len(task.predictions)),
                   key=lambda i: (task.predictions[i].created_at is not None,
                                  task.predictions[i].created_at.timestamp() if task.predictions[i].created_at else 0, i))
    flags = {i: out_of_sample(task, task.predictions[i]) for i in order}
    clean = [i for i in order if flags[i]]
    best = clean[-1] if clean else order[-1]
    return task.predictions[best], flags[best]


def isotonic(y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted least-squares non-decreasing fit of float (N,) values `y` (ordered by their x): scikit-learn's
    `IsotonicRegression` (pool-adjacent-violators), the fit `backend.predictions.score_calibration` uses too."""
    from sklearn.isotonic import IsotonicRegression

    y = np.asarray(y, float)
    if y.size == 0:
        return np.zeros(0)
    order = np.arange(y.size, dtype=float)
    return IsotonicRegression().fit(order, y, sample_weight=weights).predict(order)


@dataclass(frozen=True)
class Reliability:
    """The model's reliability on this project, from (reference prediction, chosen annotation) pairs.

    curves: {label or "*" (pooled): (float (K,) sorted scores, float (K,) fitted precision)};
    recall: {label or "*": share of annotated regions supported by a same-label prediction region (IoU >= 0.5)};
    typical_iou: {label or "*": median IoU of matched same-label pairs}; counts: {label: predicted regions};
    recall_prior: the strength (in regions) of the shrinkage of a task's recall towards the label's
    (`recall_prior_strength`).
    """

    curves: dict
    recall: dict
    typical_iou: dict
    counts: dict
    recall_prior: float = RECALL_PRIOR

    def task_recall(self, label: str, supported: int, regions: int) -> float:
        """`R_task`: the model's recall on a task's `regions` other annotated regions (`supported` of them
        supported), shrunk towards its recall for `label` over the project."""
        return (supported + self.recall_prior * self.label_recall(label)) / (regions + self.recall_prior)

    def precision(self, label: str, score: float) -> float:
        """`P(label, score)` in [0, 1]: the label's curve, else the pooled one, else the score itself."""
        key = label if self.counts.get(label, 0) >= MIN_REGIONS_PER_LABEL else "*"
        if key not in self.curves:
            return float(np.clip(score, 0, 1))
        xs, ys = self.curves[key]
        return float(np.interp(score, xs, ys))

    def label_recall(self, label: str) -> float:
        return float(self.recall.get(label, self.recall.get("*", 0.5)))

    def tightness(self, label: str) -> float:
        return float(self.typical_iou.get(label, self.typical_iou.get("*", TYPICAL_IOU)))

    def as_dict(self) -> dict:
        """JSON-able summary per label: predicted regions, recall, typical IoU."""
        labels = sorted(k for k in set(self.recall) | set(self.counts) if k != "*")
        return {label: {"predicted_regions": int(self.counts.get(label, 0)),
                        "recall": round(self.label_recall(label), 4), "typical_iou": round(self.tightness(label), 4)}
                for label in labels}


def recall_prior_strength(per_task: list[tuple[int, int]], default: float = RECALL_PRIOR,
                           most: float = MAX_RECALL_PRIOR) -> float:
    """How many regions' worth of the project-wide recall a task's own recall is shrunk towards: the
    empirical-Bayes (beta-binomial, method of moments) strength kappa = p (1 - p) / tau^2 - 1, where p is the
    pooled recall and tau^2 the variance of the tasks' recalls beyond what their binomial sampling explains.

    per_task: [(supported, annotated regions)] per task. Tasks that differ only by chance give tau^2 <= 0 and the
    strongest shrinkage (`most`); fewer than 5 tasks with 2+ regions give `default`. Result in [1, `most`].
    """
    counts = np.array([(m, n) for m, n in per_task if n >= 2], float).reshape(-1, 2)
    if len(counts) < 5:
        return default
    p = counts[:, 0].sum() / counts[:, 1].sum()
    if p <= 0 or p >= 1:
        return most
    rates = counts[:, 0] / counts[:, 1]
    between = rates.var(ddof=1) - float(np.mean(p * (1 - p) / counts[:, 1]))
    if between <= 0:
        return most
    return float(np.clip(p * (1 - p) / between - 1, 1.0, most))


def fit_reliability(pairs: list[tuple[Regions, Regions]]) -> Reliability:
    """(prediction regions, annotation regions) of many tasks → `Reliability`."""
    scores, hits, ious = defaultdict(list), defaultdict(list), defaultdict(list)
    annotated, found = defaultdict(int), defaultdict(int)
    per_task = []
    for prediction, annotation in pairs:
        iou = region_iou(prediction, annotation)
        same = (np.array(prediction.labels, object)[:, None] == np.array(annotation.labels, object)[None]).reshape(iou.shape)
        used_p, used_a = np.zeros(len(prediction), bool), np.zeros(len(annotation), bool)
        matched = greedy_pairs(iou, same, MATCH_IOU, used_p, used_a)
        for i, label in enumerate(prediction.labels):
            for key in (label, "*"):
                scores[key].append(float(prediction.scores[i]))
                hits[key].append(bool(used_p[i]))
        supported = (same & (iou >= MATCH_IOU)).any(axis=0) if iou.size else np.zeros(len(annotation), bool)
        per_task.append((int(supported.sum()), len(annotation)))
        for j, label in enumerate(annotation.labels):
            for key in (label, "*"):
                annotated[key] += 1
                found[key] += bool(supported[j])
        for _, j, value in matched:
            for key in (annotation.labels[j], "*"):
                ious[key].append(value)
    curves = {}
    for key, values in scores.items():
        unique, inverse, counts = np.unique(np.asarray(values), return_inverse=True, return_counts=True)
        mean_hit = np.bincount(inverse, weights=np.asarray(hits[key], float), minlength=len(unique)) / counts
        curves[key] = (unique, isotonic(mean_hit, counts))  # tied scores pooled first
    return Reliability(curves, {k: found[k] / annotated[k] for k in annotated},
                       {k: float(np.median(v)) for k, v in ious.items() if v},
                       {k: len(v) for k, v in scores.items() if k != "*"}, recall_prior_strength(per_task))


def _region(regions: Regions, i: int, source: str) -> dict:
    return {"source": source, "id": regions.ids[i], "control": regions.controls[i], "kind": regions.kinds[i],
            "label": regions.labels[i], "xyxy": [round(float(v), 1) for v in regions.xyxy[i]],
            "image_size": list(regions.image_size)}


def _shape_note(a: np.ndarray, p: np.ndarray) -> str:
    area = lambda b: max(float((b[2] - b[0]) * (b[3] - b[1])), 1e-6)  # noqa: E731
    ratio = area(a) / area(p)
    size = np.sqrt(area(p))
    offset = float(np.hypot((a[0] + a[2] - p[0] - p[2]) / 2, (a[1] + a[3] - p[1] - p[3]) / 2)) / size
    if ratio >= 1.5:
        return f"it is {ratio:.1f}x the area of the model's box"
    if ratio <= 1 / 1.5:
        return f"it is {ratio:.2f}x the area of the model's box"
    return f"its centre is {offset:.2f} box sizes away from the model's"


def task_entries(task: Task, prediction: Prediction, out_of_sample: bool | None, reliability: Reliability) -> list[dict]:
    """Unranked suspicious entries of one task (see the module docstring for candidates and scores)."""
    annotation = task.chosen
    P, A = prediction.regions, annotation.regions
    iou = region_iou(P, A)
    same = (np.array(P.labels, object)[:, None] == np.array(A.labels, object)[None]).reshape(iou.shape)
    scores = P.scores.astype(float)
    supports = same & (iou >= MATCH_IOU)
    support = np.array([scores[supports[:, j]].max(initial=0.0) for j in range(len(A))])
    controls = np.array(A.controls, object)
    base = {"task_id": task.id, "model_version": prediction.model_version, "out_of_sample": out_of_sample}
    cal = reliability.precision
    used_p = np.zeros(len(P), bool)
    out = []
    for j in range(len(A)):
        label = A.labels[j]
        region = _region(A, j, "annotation")
        believed = cal(label, support[j]) if support[j] > 0 else 0.0
        candidates = []
        # unsupported: spurious, or misplaced when a same-label prediction sits next to it
        others = controls == controls[j]
        others[j] = False
        n, m = int(others.sum()), int((support[others] > 0).sum())
        r_label = reliability.label_recall(label)
        r_task = reliability.task_recall(label, m, n)
        context = (f"the model supports {m} of the task's other {n} annotated regions (and {r_label:.0%} of the "
                   f"{label} regions of the project)")
        rivals = [i for i in range(len(P)) if not same[i, j] and iou[i, j] >= MATCH_IOU
                  and not np.delete(supports[i], j).any()]  # another label on this box, explaining no other region
        nearest = float(iou[:, j].max(initial=0.0))  # u: the nearest prediction region of any label
        near = [i for i in range(len(P)) if same[i, j] and PAIR_MIN_IOU <= iou[i, j] < MATCH_IOU and scores[i] > support[j]]
        if rivals:
            i = max(rivals, key=lambda k: cal(P.labels[k], scores[k]))
            other = P.labels[i]
            candidates.append(((1 - believed) * max(r_task, cal(other, scores[i])), i, {
                "kind": "possibly_swapped", "predicted_label": other, "iou": float(iou[i, j]),
                "prediction_score": scores[i],
                "reason": f"annotated {label}, the model says {other} (score {scores[i]:.2f}) for the same box (IoU "
                          f"{iou[i, j]:.2f})" + (f"; {label} only {support[j]:.2f}" if support[j] > 0
                                                   else f"; it finds no {label} there") + f"; {context}"}))
        elif near:
            i = max(near, key=lambda k: scores[k])
            candidates.append((r_task * (1 - nearest) * (1 - believed), i, {
                "kind": "loose_box", "predicted_label": label, "iou": float(iou[i, j]), "prediction_score": scores[i],
                "reason": f"no {label} prediction fits this box; the model's {label} (score {scores[i]:.2f}) overlaps it "
                          f"at IoU {iou[i, j]:.2f}: {_shape_note(A.xyxy[j], P.xyxy[i])}; {context}"}))
        else:
            weak = (f"only a {label} prediction of score {support[j]:.2f} ({believed:.0%} precision) supports this box"
                    if support[j] > 0 else f"no prediction supports this {label}")
            candidates.append((r_task * (1 - nearest) * (1 - believed), None, {
                "kind": "possibly_spurious", "predicted_label": None, "iou": None, "prediction_score": None,
                "reason": f"{weak}; the model's nearest box overlaps it at IoU {nearest:.2f}; {context}"}))
        # supported, but by a box that fits loosely
        if support[j] > 0:
            i = max(np.nonzero(supports[:, j])[0], key=lambda k: (scores[k], iou[k, j]))
            u, typical = float(iou[i, j]), reliability.tightness(label)
            if u < LOOSE_IOU:
                candidates.append((cal(label, scores[i]) * float(np.clip((typical - u) / typical, 0, 1)), i, {
                    "kind": "loose_box", "predicted_label": label, "iou": u, "prediction_score": scores[i],
                    "reason": f"the {label} box overlaps the model's {label} box (score {scores[i]:.2f}) only at IoU "
                              f"{u:.2f} (typical {typical:.2f}); {_shape_note(A.xyxy[j], P.xyxy[i])}"}))
        score, i, entry = max(candidates, key=lambda c: c[0])
        if i is not None:
            used_p[i] = True
        out.append({**base, **entry, "score": score, "label": label, "region": region,
                    "other_region": None if i is None else _region(P, i, "prediction")})
    covered = (iou >= COVER_IOU).any(axis=1) if iou.size else np.zeros(len(P), bool)
    for i in np.nonzero(~used_p & ~covered)[0]:
        label, s = P.labels[i], float(scores[i])
        p = cal(label, s)
        reason = (f"the model finds a {label} here (score {s:.2f}; {p:.0%} of its {label} regions at that score are "
                  f"annotated on this project) and no annotated region covers it")
        out.append({**base, "kind": "possibly_missed", "score": p, "label": label, "predicted_label": label,
                    "region": _region(P, int(i), "prediction"), "other_region": None, "iou": None,
                    "prediction_score": s, "reason": reason})
    return out


def find_suspicious(tasks: list[Task], ls_url: str, project_id: int, *,
                    out_of_sample: Callable[[Task, Prediction], bool | None] = made_before_annotation,
                    limit: int | None = 500, min_score: float = 0.05) -> dict:
    """Ranked suspicious entries over every task with a submitted annotation and a prediction.

    Returns {"entries": [entry], "n_entries" (before `limit`), "n_tasks_checked", "n_tasks_out_of_sample",
    "by_kind": {kind: entries before `limit`}, "calibration": `Reliability.as_dict()` (the report's key is older than
    the class's name), "thresholds": {...}}.
    Each entry: {"rank" (1 = most suspicious), "task_id", "kind", "score", "label", "predicted_label",
    "region": {"source", "id", "control", "kind", "label", "xyxy" (pixels), "image_size"}, "other_region" (the
    paired prediction region for loose_box / possibly_swapped, else None), "iou", "prediction_score",
    "model_version", "out_of_sample" (bool, None if unknown), "reason", "link"}.
    """
    chosen = []
    for task in tasks:
        if task.chosen is None:
            continue
        prediction, clean = reference_prediction(task, out_of_sample)
        if prediction is not None:
            chosen.append((task, prediction, clean))
    reliability = fit_reliability([(p.regions, t.chosen.regions) for t, p, _ in chosen])
    entries = []
    for task, prediction, clean in chosen:
        for entry in task_entries(task, prediction, clean, reliability):
            if entry["score"] >= min_score:
                entry["score"] = round(float(entry["score"]), 4)
                entry["iou"] = None if entry["iou"] is None else round(float(entry["iou"]), 4)
                if entry["prediction_score"] is not None:
                    entry["prediction_score"] = round(float(entry["prediction_score"]), 4)
                entry["link"] = task_link(ls_url, project_id, task.id)
                entries.append(entry)
    entries.sort(key=lambda e: (-e["score"], KINDS.index(e["kind"]), e["task_id"], e["region"]["xyxy"]))
    for rank, entry in enumerate(entries, 1):
        entry["rank"] = rank
    by_kind = {kind: sum(e["kind"] == kind for e in entries) for kind in KINDS}
    return {"entries": entries if limit is None else entries[:limit], "n_entries": len(entries),
            "n_tasks_checked": len(chosen), "n_tasks_out_of_sample": sum(bool(c) for _, _, c in chosen),
            "by_kind": by_kind, "calibration": reliability.as_dict(),
            "thresholds": {"match_iou": MATCH_IOU, "cover_iou": COVER_IOU, "pair_min_iou": PAIR_MIN_IOU,
                           "loose_iou": LOOSE_IOU, "recall_prior": round(reliability.recall_prior, 2), "min_score": min_score}}
