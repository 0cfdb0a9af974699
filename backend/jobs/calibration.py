"""A project's review-score calibration (`backend.predictions.score_calibration`), fitted on its reviewed tasks.

A reviewed task has a prediction and a later submitted annotation that started from it (`Task.prelabel`). It was
"accepted unchanged" when every region of the prediction was kept (same label, IoU >= 0.9) and nothing was added
(`backend.review.acceptance`; an empty prediction with an empty annotation counts as accepted). The fit uses the raw
score this service recorded for that task and model_version (`backend.store.scores`); tasks without one are left out
(Label Studio's stored score may already be calibrated). The tasks come from `export_for_review` (Label Studio's
export lists predictions by id only; their full form comes from `/api/predictions`). With fewer than `MIN_REVIEWED`
reviewed tasks, or only one outcome among them, the project has no calibration and scores stay raw.

A project whose two-view scores were recorded with the mirror's regions (`backend.store.scores`) also gets the learned
region model (`backend.predictions.region_model`) when, out of fold over its reviewed tasks, that model's score ranks
them by their pre-label's F1 better than the raw score: the isotonic curve is then fitted on the out-of-fold learned
scores and reads the model's score at prediction time. A region counts as kept when the annotation has it (same label,
IoU >= 0.5: accepted or adjusted, `backend.review.acceptance`), read on the config's primary control
(`region_model.primary_control`, as at prediction time).

Then the count model (`backend.predictions.count_model`), fitted on the reviewed tasks whose image embedding a predict
job recorded: chosen the same way (out of fold, ranking them by F1 better than the score chosen so far), it adds the
objects it expects beyond the shown regions to the expected corrections (the region model's when chosen), and the
isotonic curve is fitted on its out-of-fold scores instead.

Last the rate mix (`backend.predictions.rate_mix`): where, on the reviewed tasks, weighing the expected corrections
(and misses) so far by their share of each task's units as well ranks those tasks by F1 better without putting fewer
of their corrections in the lowest 30 %, the curve is fitted on the mixed scores at the chosen k instead.

A model is chosen for ordering the reviewed tasks by F1, which needs no acceptance. Where those tasks hold one outcome
only (a dense-object project where every pre-label needed some correction) no probability of acceptance can be
fitted: the chosen model then serves its own score through an order-only curve (`ScoreCalibration.order_only`), and
"reason" says why the served scores are no probability.

Stored at MODEL_DIR/projects/<id>/calibration.json: {"fitted_at": epoch s, "calibration": dict or null, "reason": why
none, "reviewed": n, "review_score": the mode whose raw scores it was fitted on ("mirror" when absent),
"region_model": the selection's evidence (`select_region_model`: which score, why, Spearman of each), "count_model":
the count model's (`select_count_model`), "rate_mix": the rate mix's (`select_rate_mix`), "annotated": the
project's annotated tasks when it was fitted}; refitted by a predict job when older than CALIBRATION_REFRESH_S, or
sooner once the project's annotated tasks have reached `MIN_REVIEWED` and grown `GROWTH`-fold since the last fit (so a
project is calibrated, and can choose its learned region model, as soon as it has the reviews for it, not up to
CALIBRATION_REFRESH_S later; one export per doubling); not applied to another mode's scores (a project that changes
`review_score` is uncalibrated until the next refit).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from backend.core.detections import Detections
from backend.core.layout import ModelDir
from backend.core.files import write_atomic
from backend.core.ontology import Ontology
from backend.core.sizes import Size
from backend.labelstudio.api import export_for_review
from backend.predictions.count_model import select_count_model
from backend.predictions.region_model import (RegionModel, RegionModelError, Reviewed, from_rows, of_labels,
                                              primary_control, select_region_model)
from backend.predictions.rate_mix import select_rate_mix
from backend.predictions.scoring import agreement_errors, agreement_units
from backend.predictions.score_calibration import MIN_REVIEWED, CalibrationError, ScoreCalibration
from backend.review.acceptance import region_outcomes
from backend.review.export import Task, read_export
from backend.review.routing import task_agreement
from backend.store.scores import DEFAULT_MODE, LEGACY_MODE, ScoreLog

log = logging.getLogger(__name__)
GROWTH = 2.0  # a project whose annotated tasks have grown this much since its last fit is refitted now


def calibration_path(model_dir: Path, project_id: int) -> Path:
    return ModelDir(Path(model_dir)).calibration(project_id)


def reviewed_outcomes(export: list[dict], ontology: Ontology, scores: ScoreLog, project_id: int,
                      mode: str = DEFAULT_MODE) -> tuple[list[float], list[bool]]:
    """(raw scores, accepted unchanged) of the export's reviewed tasks that have a recorded raw score (the review
    page's per-task agreement, `backend.review.routing.task_agreement`, with the raw score in place of Label
    Studio's)."""
    return _outcomes(read_export(export, ontology), scores, project_id, mode)


def _outcomes(tasks: list[Task], scores: ScoreLog, project_id: int, mode: str) -> tuple[list[float], list[bool]]:
    """`reviewed_outcomes` of tasks already read from the export."""
    reviewed = task_agreement(tasks)
    recorded: dict[str, dict[int, float]] = {}
    for version in {r["model_version"] for r in reviewed}:
        recorded[version] = scores.get(project_id, version, [r["task_id"] for r in reviewed], mode)
    pairs = [(recorded[r["model_version"]][r["task_id"]], r["unchanged"]) for r in reviewed
             if r["task_id"] in recorded[r["model_version"]]]
    return [float(score) for score, _ in pairs], [bool(kept) for _, kept in pairs]


def reviewed_views(tasks: list[Task], ontology: Ontology, scores: ScoreLog, project_id: int,
                   mode: str = DEFAULT_MODE) -> list[tuple[Reviewed, bool]]:
    """(`Reviewed`, accepted unchanged) of the reviewed tasks whose raw score and mirror regions were recorded: the
    regions of the config's `primary_control` (none without one) and the mirror's of its labels; accepted unchanged
    over every control, as `reviewed_outcomes` reads it."""
    control = primary_control(ontology)
    if control is None:
        return []
    pairs = [(task, task.prelabel(), task.chosen) for task in tasks]
    pairs = [(task, p, a) for task, p, a in pairs if p is not None and a is not None]
    out = []
    for version in sorted({p.model_version for _, p, _ in pairs}):
        mine = [(t, p, a) for t, p, a in pairs if p.model_version == version]
        ids = [t.id for t, _, _ in mine]
        raw, mirrors = scores.get(project_id, version, ids, mode), scores.get_mirrors(project_id, version, ids, mode)
        embeddings = scores.get_embeddings(project_id, version, ids, mode)
        for task, prediction, annotation in mine:
            if task.id not in raw or task.id not in mirrors:
                continue
            size = next((r.image_size for r in (prediction.regions, annotation.regions) if r.image_size.width),
                        Size(1, 1))  # an empty prediction: only the mirror's scores count
            try:
                mirror = of_labels(from_rows(mirrors[task.id], size), control)
            except RegionModelError:
                continue
            shown, drawn = (r.select([c == control.name for c in r.controls])
                            for r in (prediction.regions, annotation.regions))
            kept = [o.outcome in ("accepted", "adjusted") for o in region_outcomes(shown, drawn)[:len(shown)]]
            n = len(shown) + len(drawn)
            f1 = 1.0 if n == 0 else 2 * sum(kept) / n
            unchanged = all(o.outcome == "accepted" for o in region_outcomes(prediction.regions, annotation.regions))
            served = shown.boxes if len(shown) else Detections.empty(size)
            out.append((Reviewed(served, mirror, np.array(kept, bool), f1, float(raw[task.id]), len(drawn),
                                 embeddings.get(task.id)), unchanged))
    return out


def fit_calibration(export: list[dict], ontology: Ontology, scores: ScoreLog, project_id: int,
                    mode: str = DEFAULT_MODE) -> dict:
    """The stored form (see module docstring) fitted now on `export` (Label Studio's JSON export) and the raw
    scores of review_score `mode` (and the mirror regions recorded with them)."""
    tasks = read_export(export, ontology)  # read once for both fits
    raw, accepted = _outcomes(tasks, scores, project_id, mode)
    views = reviewed_views(tasks, ontology, scores, project_id, mode)
    model, learned, evidence = select_region_model([r for r, _ in views])
    stored = {"fitted_at": time.time(), "calibration": None, "reason": "", "reviewed": len(raw),
              "accepted": int(sum(accepted)), "review_score": mode, "region_model": evidence}
    try:
        raw_curve = ScoreCalibration.fit(raw, accepted)
    except CalibrationError as exc:
        raw_curve, stored["reason"] = None, str(exc)
    fitted = raw_curve
    if model is not None:
        try:
            curve, why = model_curve(learned, [unchanged for _, unchanged in views])
            fitted, stored["reason"] = curve.with_region_model(model, raw_curve), why
        except CalibrationError as exc:
            model = None
            evidence.update(score="default", reason=f"the learned score could not be calibrated: {exc}")
    fitted, stored["count_model"], why, counted = _with_count_model(views, model, learned if model is not None
                                                                    else None, fitted, raw_curve)
    if fitted is not None and fitted.count_model is not None:
        stored["reason"] = why
    fitted, stored["rate_mix"], why = _with_rate_mix(views, model, learned if model is not None else None, counted,
                                                     fitted, raw_curve)
    if fitted is not None and fitted.rate_k is not None:
        stored["reason"] = why
    stored["calibration"] = fitted.to_dict() if fitted is not None else None
    return stored


def model_curve(scores: np.ndarray, accepted: list[bool]) -> tuple[ScoreCalibration, str]:
    """(the isotonic curve of a chosen model's out-of-fold `scores` over reviewed tasks `accepted` unchanged or not,
    ""), or where those tasks hold one outcome only, (`ScoreCalibration.order_only`, why the served score is no
    probability): the model was chosen for ordering them by F1, which needs no acceptance. Raises
    `CalibrationError` with fewer than `MIN_REVIEWED` tasks."""
    try:
        return ScoreCalibration.fit(scores, accepted), ""
    except CalibrationError as exc:
        n, k = len(accepted), int(sum(accepted))
        if n < MIN_REVIEWED or k not in (0, n):
            raise
        return ScoreCalibration.order_only(n, k), (f"{exc}: the model's score orders the tasks but is no probability "
                                                   f"of acceptance")


def _with_count_model(views: list[tuple[Reviewed, bool]], region_model: RegionModel | None,
                      learned: np.ndarray | None, fitted: ScoreCalibration | None,
                      raw_curve: ScoreCalibration | None
                      ) -> tuple[ScoreCalibration | None, dict, str, tuple[list[int], np.ndarray] | None]:
    """(`fitted`, or a curve on the count model's out-of-fold scores where `select_count_model` chooses it (order-only
    where the reviewed tasks hold one outcome, `model_curve`); the selection's evidence; why that curve is no
    probability, "" when it is one; where chosen, (the indices into `views` it scored, their out-of-fold count
    scores), else None). The expected corrections it adds to: the region model's out of fold (`learned`,
    when chosen), else the two views' agreement errors; the score it must beat is the one served without it: the
    region model's out of fold, else the recorded raw score (0 for a pre-label with nothing found, as served)."""
    embedded = [i for i, (r, _) in enumerate(views) if r.embedding is not None]
    tasks = [views[i][0] for i in embedded]
    if learned is not None:
        default = learned[embedded]
        expected = np.array([1.0 / s - 1.0 if s > 0 else 0.0 for s in default])
    else:
        default = np.array([t.raw_score for t in tasks])
        expected = np.array([agreement_errors([t.served, t.mirror]) for t in tasks])
    dims = {t.embedding.shape for t in tasks}
    if len(dims) > 1:  # the embedder changed between predictions: keep the latest ones' size only
        latest = tasks[-1].embedding.shape
        keep = [k for k, t in enumerate(tasks) if t.embedding.shape == latest]
        tasks, embedded = [tasks[k] for k in keep], [embedded[k] for k in keep]
        expected, default = expected[keep], default[keep]
    count, scored, evidence = select_count_model(
        np.stack([t.embedding for t in tasks]) if tasks else np.zeros((0, 1)),
        np.array([t.annotated for t in tasks]), expected, np.array([len(t.served) for t in tasks]),
        np.array([t.f1 for t in tasks]), default=default)
    if count is None:
        return fitted, evidence, "", None
    try:
        curve, why = model_curve(scored, [views[i][1] for i in embedded])
    except CalibrationError as exc:
        evidence.update(score="default", reason=f"the count score could not be calibrated: {exc}")
        return fitted, evidence, "", None
    return curve.with_count_model(count, region_model, raw_curve), evidence, why, (embedded, scored)


def _with_rate_mix(views: list[tuple[Reviewed, bool]], region_model: RegionModel | None, learned: np.ndarray | None,
                   counted: tuple[list[int], np.ndarray] | None, fitted: ScoreCalibration | None,
                   raw_curve: ScoreCalibration | None) -> tuple[ScoreCalibration | None, dict, str]:
    """(`fitted`, or a curve on the rate mix's scores where `select_rate_mix` chooses it (order-only where the
    reviewed tasks hold one outcome); the selection's evidence; why that curve is no probability). It mixes the
    expected corrections of the score served so far, out of fold: the count model's (`counted`: the tasks it scored
    and their scores, whose misses are added to the units too) where chosen, else the region model's (`learned`),
    else the two views' agreement errors; and must beat that score (else the recorded raw one)."""
    indices = counted[0] if counted is not None else list(range(len(views)))
    tasks = [views[i][0] for i in indices]
    if learned is not None:
        served = np.asarray(learned, np.float64)[indices]
        expected = np.array([1.0 / s - 1.0 if s > 0 else 0.0 for s in served])
    else:
        served = np.array([t.raw_score for t in tasks], np.float64)
        expected = np.array([agreement_errors([t.served, t.mirror]) for t in tasks])
    units = np.array([agreement_units([t.served, t.mirror]) for t in tasks], np.float64)
    if counted is not None:
        served = np.asarray(counted[1], np.float64)
        missed = np.maximum(1.0 / served - 1.0 - expected, 0.0)
        expected, units = expected + missed, units + missed
    f1 = np.array([t.f1 for t in tasks], np.float64)
    k, mixed, evidence = select_rate_mix(expected, units, f1, np.array([t.corrections for t in tasks], np.float64),
                                         served)
    if k is None:
        return fitted, evidence, ""
    try:
        curve, why = model_curve(mixed, [views[i][1] for i in indices])
    except CalibrationError as exc:
        evidence.update(score="default", k=None, reason=f"the mixed score could not be calibrated: {exc}")
        return fitted, evidence, ""
    count_model = fitted.count_model if fitted is not None and counted is not None else None
    return curve.with_rate_mix(k, region_model, count_model, raw_curve), evidence, why


def load_calibration(model_dir: Path, project_id: int | None, mode: str = DEFAULT_MODE
                     ) -> tuple[ScoreCalibration | None, float]:
    """(the project's stored calibration of review_score `mode` or None, its age in seconds; inf when never fitted
    or fitted on another mode's scores)."""
    return _calibration_of(_stored(model_dir, project_id) if project_id is not None else {}, mode)


def _stored(model_dir: Path, project_id: int) -> dict:
    """The stored form as written, {} when there is none or it cannot be read."""
    try:
        stored = json.loads(calibration_path(model_dir, project_id).read_text())
        return stored if isinstance(stored, dict) else {}
    except (OSError, ValueError):
        return {}


def _calibration_of(stored: dict, mode: str) -> tuple[ScoreCalibration | None, float]:
    """`load_calibration` of the stored form `stored`."""
    try:
        if not stored or stored.get("review_score", LEGACY_MODE) != mode:
            return None, float("inf")
        age = time.time() - float(stored["fitted_at"])
        return (ScoreCalibration.from_dict(stored["calibration"]) if stored["calibration"] else None), age
    except (ValueError, KeyError, TypeError, AttributeError, CalibrationError):
        return None, float("inf")


def calibration_summary(model_dir: Path, project_id: int, mode: str = DEFAULT_MODE) -> dict:
    """What the review page says about the project's review order: {"review_score": `mode` (the project's now),
    "fitted_on": the mode the stored calibration was fitted on or None, "fitted_at", "reviewed", "accepted",
    "calibrated": the stored calibration serves `mode`, "probability": the scores it serves are probabilities of
    acceptance (False when uncalibrated or order-only), "reason", "region_model", "count_model" and "rate_mix": the
    selections' evidence or None}."""
    out = {"review_score": mode, "fitted_on": None, "fitted_at": None, "reviewed": None, "accepted": None,
           "calibrated": False, "probability": False, "reason": "", "region_model": None, "count_model": None,
           "rate_mix": None}
    stored = _stored(model_dir, project_id)
    if stored:
        fitted_on, curve = stored.get("review_score", LEGACY_MODE), stored.get("calibration")
        calibrated = bool(curve) and fitted_on == mode
        out.update(fitted_on=fitted_on, fitted_at=stored.get("fitted_at"), reviewed=stored.get("reviewed"),
                   accepted=stored.get("accepted"), reason=stored.get("reason", ""), calibrated=calibrated,
                   probability=calibrated and not (isinstance(curve, dict) and curve.get("probability") is False),
                   region_model=stored.get("region_model") if fitted_on == mode else None,
                   count_model=stored.get("count_model") if fitted_on == mode else None,
                   rate_mix=stored.get("rate_mix") if fitted_on == mode else None)
    return out


def calibration_due(age_s: float, max_age_s: float, annotated_then: int | None, annotated_now: int | None) -> bool:
    """Whether a stored calibration `age_s` old (inf: none of this mode), fitted when the project had
    `annotated_then` annotated tasks (None: not recorded, as 0), is refitted now that it has `annotated_now` (None:
    not known): when older than `max_age_s`, or once `annotated_now` reaches `MIN_REVIEWED` and `GROWTH` times
    `annotated_then`."""
    if age_s >= max_age_s:
        return True
    if annotated_now is None:
        return False
    return annotated_now >= MIN_REVIEWED and annotated_now >= GROWTH * (annotated_then or 0)


def refresh_calibration(connection, model_dir: Path, scores: ScoreLog, project_id: int, ontology: Ontology,
                        max_age_s: float, mode: str = DEFAULT_MODE, annotated: int | None = None
                        ) -> ScoreCalibration | None:
    """The project's calibration of review_score `mode`, refitted from a fresh export when `calibration_due` (older
    than `max_age_s`, of another mode, or the project's `annotated` tasks have grown enough since the last fit)."""
    stored = _stored(model_dir, project_id)
    calibration, age = _calibration_of(stored, mode)
    if not calibration_due(age, max_age_s, stored.get("annotated"), annotated):
        return calibration
    try:
        export = export_for_review(connection, project_id, all_tasks=False)  # reviewed tasks are annotated
    except Exception as exc:  # noqa: BLE001 - keep what was fitted before; try again after max_age_s, not every job
        log.warning("project %s: score calibration not refreshed (export failed: %s)", project_id, exc)
        write_atomic(calibration_path(model_dir, project_id), json.dumps({
            "fitted_at": time.time(), "calibration": calibration.to_dict() if calibration else None,
            "reason": f"export failed: {exc}", "reviewed": 0, "accepted": 0, "review_score": mode,
            "annotated": annotated}).encode())  # the next try waits for the same growth or age
        return calibration
    stored = fit_calibration(export, ontology, scores, project_id, mode)
    stored["annotated"] = len(export) if annotated is None else annotated
    write_atomic(calibration_path(model_dir, project_id), json.dumps(stored).encode())
    log.info("project %s: score calibration %s (%d reviewed tasks, %d accepted unchanged; %s score: %s; count model: "
             "%s; rate mix: %s)", project_id, _fit_note(stored),
             stored["reviewed"], stored["accepted"], stored["region_model"]["score"], stored["region_model"]["reason"],
             stored["count_model"]["reason"], stored["rate_mix"]["reason"])
    return load_calibration(model_dir, project_id, mode)[0]


def _fit_note(stored: dict) -> str:
    """How a fresh fit ended, for the log: "fitted", "fitted (<why it is order-only>)" or "not fitted: <why>"."""
    if not stored["calibration"]:
        return f"not fitted: {stored['reason']}"
    return f"fitted ({stored['reason']})" if stored["reason"] else "fitted"
