"""A project's review-score calibration (`backend.predictions.score_calibration`), fitted on its reviewed tasks.

A reviewed task has a prediction and a later submitted annotation that started from it (`Task.prelabel`). It was
"accepted unchanged" when every region of the prediction was kept (same label, IoU >= 0.9) and nothing was added
(`backend.review.acceptance`; an empty prediction with an empty annotation counts as accepted). The fit uses the raw
score this service recorded for that task and model_version (`backend.store.scores`); tasks without one are left out
(Label Studio's stored score may already be calibrated). The tasks come from `export_for_review` (Label Studio's
export lists predictions by id only; their full form comes from `/api/predictions`). With fewer than `MIN_REVIEWED`
reviewed tasks, or only one outcome among them, the project has no calibration and scores stay raw.

Stored at MODEL_DIR/projects/<id>/calibration.json: {"fitted_at": epoch s, "calibration": dict or null, "reason": why
none, "reviewed": n, "review_score": the mode whose raw scores it was fitted on ("mirror" when absent)}; refitted by
a predict job when older than CALIBRATION_REFRESH_S, and not applied to another mode's scores (a project that changes
`review_score` is uncalibrated until the next refit).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from backend.core.layout import ModelDir
from backend.core.files import write_atomic
from backend.core.ontology import Ontology
from backend.labelstudio.api import export_for_review
from backend.predictions.score_calibration import CalibrationError, ScoreCalibration
from backend.review.export import read_export
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


def fit_calibration(export: list[dict], ontology: Ontology, scores: ScoreLog, project_id: int,
                    mode: str = DEFAULT_MODE) -> dict:
    """The stored form (see module docstring) fitted now on `export` (Label Studio's JSON export) and the raw
    scores of review_score `mode`."""
    raw, accepted = reviewed_outcomes(export, ontology, scores, project_id, mode)
    stored = {"fitted_at": time.time(), "calibration": None, "reason": "", "reviewed": len(raw),
              "accepted": int(sum(accepted)), "review_score": mode}
    try:
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
    log.info("project %s: score calibration %s (%d reviewed tasks, %d accepted unchanged)", project_id,
             "fitted" if stored["calibration"] else f"not fitted: {stored['reason']}", stored["reviewed"],
             stored["accepted"])
    return load_calibration(model_dir, project_id, mode)[0]
