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
IoU >= 0.5: accepted or adjusted, `backend.review.acceptance`), read on one control of the config (`one_control`).

Stored at MODEL_DIR/projects/<id>/calibration.json: {"fitted_at": epoch s, "calibration": dict or null, "reason": why
none, "reviewed": n, "review_score": the mode whose raw scores it was fitted on ("mirror" when absent),
"region_model": the selection's evidence (`select_region_model`: which score, why, Spearman of each)}; refitted by
a predict job when older than CALIBRATION_REFRESH_S, and not applied to another mode's scores (a project that changes
`review_score` is uncalibrated until the next refit).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from backend.core.layout import ModelDir
from backend.core.files import write_atomic
from backend.core.ontology import Ontology
from backend.labelstudio.api import export_for_review
from backend.predictions.region_model import RegionModelError, Reviewed, from_rows, select_region_model
from backend.predictions.score_calibration import CalibrationError, ScoreCalibration
from backend.review.acceptance import region_outcomes
from backend.review.export import Regions, Task, read_export
from backend.review.routing import task_agreement
from backend.store.scores import DEFAULT_MODE, LEGACY_MODE, ScoreLog

log = logging.getLogger(__name__)


def calibration_path(model_dir: Path, project_id: int) -> Path:
    return ModelDir(Path(model_dir)).calibration(project_id)


def reviewed_outcomes(export: list[dict], ontology: Ontology, scores: ScoreLog, project_id: int,
                      mode: str = DEFAULT_MODE) -> tuple[list[float], list[bool]]:
    """(raw scores, accepted unchanged) of the export's reviewed tasks that have a recorded raw score (the review
    page's per-task agreement, `backend.review.routing.task_agreement`, with the raw score in place of Label
    Studio's)."""
    reviewed = task_agreement(read_export(export, ontology))
    recorded: dict[str, dict[int, float]] = {}
    for version in {r["model_version"] for r in reviewed}:
        recorded[version] = scores.get(project_id, version, [r["task_id"] for r in reviewed], mode)
    pairs = [(recorded[r["model_version"]][r["task_id"]], r["unchanged"]) for r in reviewed
             if r["task_id"] in recorded[r["model_version"]]]
    return [float(score) for score, _ in pairs], [bool(kept) for _, kept in pairs]


def reviewed_views(tasks: list[Task], scores: ScoreLog, project_id: int, mode: str = DEFAULT_MODE
                   ) -> list[tuple[Reviewed, bool]]:
    """(`Reviewed`, accepted unchanged) of the reviewed tasks whose raw score and mirror regions were recorded and
    whose image size the prediction states."""
    pairs = [(task, task.prelabel(), task.chosen) for task in tasks]
    pairs = [(task, p, a) for task, p, a in pairs if p is not None and a is not None and p.regions.image_size.width]
    out = []
    for version in {p.model_version for _, p, _ in pairs}:
        mine = [(t, p, a) for t, p, a in pairs if p.model_version == version]
        ids = [t.id for t, _, _ in mine]
        raw, mirrors = scores.get(project_id, version, ids, mode), scores.get_mirrors(project_id, version, ids, mode)
        for task, prediction, annotation in mine:
            if task.id not in raw or task.id not in mirrors:
                continue
            try:
                mirror = from_rows(mirrors[task.id], prediction.regions.image_size)
            except RegionModelError:
                continue
            shown, drawn = one_control(prediction.regions, annotation.regions)
            outcomes = region_outcomes(shown, drawn)
            kept = [o.outcome in ("accepted", "adjusted") for o in outcomes[:len(shown)]]
            n = len(shown) + len(drawn)
            f1 = 1.0 if n == 0 else 2 * sum(kept) / n
            out.append((Reviewed(shown.boxes, mirror, np.array(kept, bool), f1, float(raw[task.id])),
                        all(o.outcome == "accepted" for o in outcomes)))
    return out


PRIMARY_KINDS = ("rectanglelabels", "polygonlabels", "brushlabels", "choices")


def one_control(shown: Regions, drawn: Regions) -> tuple[Regions, Regions]:
    """The regions of one control of a prediction and of its annotation: a model's region is written once per
    control of the config (a box and a mask of the same object), and the model sees it once. The control is the
    prediction's first of the kinds in `PRIMARY_KINDS` order (rectangles first)."""
    for kind in PRIMARY_KINDS:
        controls = [c for c, k in zip(shown.controls, shown.kinds) if k == kind]
        if controls:
            return (shown.select([c == controls[0] for c in shown.controls]),
                    drawn.select([c == controls[0] for c in drawn.controls]))
    return shown, drawn.select([c in set(shown.controls) for c in drawn.controls])


def fit_calibration(export: list[dict], ontology: Ontology, scores: ScoreLog, project_id: int,
                    mode: str = DEFAULT_MODE) -> dict:
    """The stored form (see module docstring) fitted now on `export` (Label Studio's JSON export) and the raw
    scores of review_score `mode` (and the mirror regions recorded with them)."""
    raw, accepted = reviewed_outcomes(export, ontology, scores, project_id, mode)
    views = reviewed_views(read_export(export, ontology), scores, project_id, mode)
    model, learned, evidence = select_region_model([r for r, _ in views])
    stored = {"fitted_at": time.time(), "calibration": None, "reason": "", "reviewed": len(raw),
              "accepted": int(sum(accepted)), "review_score": mode, "region_model": evidence}
    try:
        if model is not None:
            stored["calibration"] = ScoreCalibration.fit(learned, [kept for _, kept in views]).with_region_model(
                model).to_dict()
        else:
            stored["calibration"] = ScoreCalibration.fit(raw, accepted).to_dict()
    except CalibrationError as exc:
        stored["reason"] = str(exc)
    return stored


def load_calibration(model_dir: Path, project_id: int | None, mode: str = DEFAULT_MODE
                     ) -> tuple[ScoreCalibration | None, float]:
    """(the project's stored calibration of review_score `mode` or None, its age in seconds; inf when never fitted
    or fitted on another mode's scores)."""
    if project_id is None:
        return None, float("inf")
    try:
        stored = json.loads(calibration_path(model_dir, project_id).read_text())
        if stored.get("review_score", LEGACY_MODE) != mode:
            return None, float("inf")
        age = time.time() - float(stored["fitted_at"])
        return (ScoreCalibration.from_dict(stored["calibration"]) if stored["calibration"] else None), age
    except (OSError, ValueError, KeyError, TypeError, CalibrationError):
        return None, float("inf")


def calibration_summary(model_dir: Path, project_id: int) -> dict | None:
    """What the review page says about the project's review order: {"review_score", "fitted_at", "reviewed",
    "accepted", "calibrated", "reason", "region_model": the selection's evidence or None}; None when never fitted."""
    try:
        stored = json.loads(calibration_path(model_dir, project_id).read_text())
        return {"review_score": stored.get("review_score", LEGACY_MODE), "fitted_at": stored.get("fitted_at"),
                "reviewed": stored.get("reviewed"), "accepted": stored.get("accepted"),
                "calibrated": bool(stored.get("calibration")), "reason": stored.get("reason", ""),
                "region_model": stored.get("region_model")}
    except (OSError, ValueError, AttributeError):
        return None


def refresh_calibration(connection, model_dir: Path, scores: ScoreLog, project_id: int, ontology: Ontology,
                        max_age_s: float, mode: str = DEFAULT_MODE) -> ScoreCalibration | None:
    """The project's calibration of review_score `mode`, refitted from a fresh export when the stored one is older
    than `max_age_s` (or of another mode)."""
    calibration, age = load_calibration(model_dir, project_id, mode)
    if age < max_age_s:
        return calibration
    try:
        export = export_for_review(connection, project_id, all_tasks=False)  # reviewed tasks are annotated
    except Exception as exc:  # noqa: BLE001 - keep what was fitted before; try again after max_age_s, not every job
        log.warning("project %s: score calibration not refreshed (export failed: %s)", project_id, exc)
        write_atomic(calibration_path(model_dir, project_id), json.dumps({
            "fitted_at": time.time(), "calibration": calibration.to_dict() if calibration else None,
            "reason": f"export failed: {exc}", "reviewed": 0, "accepted": 0, "review_score": mode}).encode())
        return calibration
    stored = fit_calibration(export, ontology, scores, project_id, mode)
    write_atomic(calibration_path(model_dir, project_id), json.dumps(stored).encode())
    log.info("project %s: score calibration %s (%d reviewed tasks, %d accepted unchanged; %s score: %s)", project_id,
             "fitted" if stored["calibration"] else f"not fitted: {stored['reason']}", stored["reviewed"],
             stored["accepted"], stored["region_model"]["score"], stored["region_model"]["reason"])
    return load_calibration(model_dir, project_id, mode)[0]
