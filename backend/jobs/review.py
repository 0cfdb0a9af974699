"""The `review` job: a project's review report (`backend.review.report.build_report`) computed from its Label
Studio export and cached on disk, with the rendered page, for `GET /review` and `GET /review.json`.

Cache (per project, under `MODEL_DIR/projects/<id>/`, each file written atomically):
- `review.json`: the report plus `"job"` (the job id that made it) and `"computed_in_s"` (seconds the job took);
- `review.html`: the page rendered from it (`backend.review.html.render_html`), so serving it costs a file read.

Which predictions are out of sample (the suspicious list prefers them): the registry does not record the task ids
a trained version learnt from, so `out_of_sample` reconstructs it from what is recorded. A prediction whose
`model_version` names no trained version of this project (the zero-shot pipelines: LIME over ImageNet, Grounding
DINO + SAM) never saw the project's annotations: out of sample. One that names a trained version
(`project<N>-<kind>-vNNNN`) is out of sample when the task's chosen annotation was created after that version was
committed (the training export could not hold it), or when the version was evaluated on held-out tasks and this
task is one of them (`backend.training.dataset.is_held_out`: the split depends on the task id alone); otherwise
it is in sample. A version no longer on disk falls back to the default rule (prediction created no later than the
annotation, `backend.review.suspicious.made_before_annotation`).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from backend.core.cancel import NEVER, StopFlag
from backend.core.device import BACKGROUND
from backend.core.layout import ModelDir
from backend.core.files import write_atomic
from backend.core.params import ProjectParams
from backend.labelstudio.api import export_for_review, project_settings
from backend.labelstudio.config import parse_label_config
from backend.review.export import Prediction, Task
from backend.review.html import render_html
from backend.review.report import build_report
from backend.review.suspicious import made_before_annotation
from backend.training.dataset import is_held_out
from backend.jobs.calibration import calibration_summary
from backend.jobs.queue import PREDICT_JOB, REVIEW_JOB
from backend.registry.versions import trained_versions

if TYPE_CHECKING:  # annotations only: the context module imports this one
    from backend.jobs.context import JobContext

log = logging.getLogger(__name__)
KIND = REVIEW_JOB


def report_path(model_dir: Path, project_id: int) -> Path:
    return ModelDir(Path(model_dir)).review_report(project_id)


def page_path(model_dir: Path, project_id: int) -> Path:
    return ModelDir(Path(model_dir)).review_page(project_id)


def read_cached_report(model_dir: Path, project_id: int) -> dict | None:
    """The cached report (a dict as `build_report` returns it, plus "job" and "computed_in_s"), or None."""
    try:
        return json.loads(report_path(model_dir, project_id).read_text())
    except (OSError, ValueError):
        return None


def read_cached_page(model_dir: Path, project_id: int) -> str | None:
    """The cached page's HTML, or None."""
    try:
        return page_path(model_dir, project_id).read_text()
    except OSError:
        return None


def out_of_sample_rule(registry, project_id: int):
    """`out_of_sample(task, prediction) -> bool | None` for `build_report` (the rule of the module docstring);
    version metrics are read once per version."""
    seen: dict[tuple[str, str], dict | None] = {}

    def metrics(kind: str, name: str) -> dict | None:
        if (kind, name) not in seen:
            try:
                seen[kind, name] = registry.version(project_id, kind, name).metrics
            except (KeyError, OSError, ValueError):
                seen[kind, name] = None
        return seen[kind, name]

    def rule(task: Task, prediction: Prediction) -> bool | None:
        versions = trained_versions(prediction.model_version, project_id)
        if not versions:
            return True  # zero-shot: trained on no annotation of this project
        annotation = task.chosen
        verdicts = []
        for kind, name in versions:
            recorded = metrics(kind, name)
            if recorded is None or annotation is None:
                return made_before_annotation(task, prediction)
            committed = recorded.get("created_at")
            after = annotation.created_at is not None and isinstance(committed, (int, float)) and \
                annotation.created_at.timestamp() > committed
            held_out = recorded.get("evaluated_on") == "held-out" and is_held_out(task.id)
            verdicts.append(after or held_out)
        return all(verdicts)

    return rule


def run_review_job(context: JobContext, job: dict, stop: StopFlag = NEVER) -> dict:
    """Export → report (with the embedding map on EfficientNet-Lite0 crop features) → cached JSON and page.
    Returns the job's result: {"generated_at", "computed_in_s", "counts", "path"}."""
    started = time.perf_counter()
    project_id = int(job["project_id"])
    project = context.projects.set_up(project_id)
    params = ProjectParams.from_extra(project.extra_params)
    ontology = parse_label_config(project.label_config, params.predict)
    progress = lambda stage, **extra: context.jobs.set_progress(job["id"], {"stage": stage, **extra})  # noqa: E731
    progress("export")
    export = export_for_review(context.connection, project_id)
    stop.check()
    progress("report", tasks=len(export))
    loaded = {"images": 0}

    def load_image(task: Task):
        stop.check()  # the embedding loads one image per task: the job's cancel points
        loaded["images"] += 1
        if loaded["images"] % 50 == 0:
            progress("embedding", tasks=len(export), images=loaded["images"])
        return context.images.load(task.image, task.id).pixels

    def features(crops):
        embedder = context.models.embedder.get()  # loaded once per process
        with context.gate.hold(BACKGROUND):
            return embedder.features(crops)

    accept_threshold = params.predict.accept_threshold or None  # 0: not set
    try:
        shown_version = project_settings(context.connection, project_id).get("model_version") or None
    except Exception as exc:  # noqa: BLE001 - hybrid routing then reads each task's latest prediction
        log.warning("project %s: its model_version not read for the review: %s", project_id, exc)
        shown_version = None
    report = build_report(export, ontology, context.connection.base_url, project_id, load_image=load_image,
                          features=features, out_of_sample=out_of_sample_rule(context.registry, project_id),
                          accept_threshold=accept_threshold, shown_version=shown_version,
                          draw_seconds=params.train.draw_seconds)
    stop.check()
    progress("saving", tasks=len(export))
    report["job"] = int(job["id"])
    report["prelabelling"] = prelabelling(context, project_id)
    report["review_order"] = calibration_summary(context.settings.model_dir, project_id, params.predict.review_score)
    report["computed_in_s"] = round(time.perf_counter() - started, 2)
    save_report(context.settings.model_dir, project_id, report)
    log.info("project %s: review report of %d tasks in %.1f s", project_id, len(export), report["computed_in_s"])
    return {"generated_at": report["generated_at"], "computed_in_s": report["computed_in_s"],
            "counts": report["counts"], "path": str(report_path(context.settings.model_dir, project_id))}


def prelabelling(context: JobContext, project_id: int) -> dict:
    """What the review page's "Pre-labelling" section shows: the project's coverage (labels pre-labelled or not,
    with the fix) and how its last predict job ended."""
    stored = context.projects.get(project_id)
    (last,) = context.jobs.jobs(project_id, limit=1, kind=PREDICT_JOB) or (None,)
    return {"coverage": stored.coverage if stored else {},
            "last_predict": {"job": last["id"], "status": last["status"], "message": last["message"]} if last else None}


def save_report(model_dir: Path, project_id: int, report: dict) -> None:
    """Write the page first, then the report: a reader that sees the new report finds its page too."""
    write_atomic(page_path(model_dir, project_id), render_html(report, now=datetime.now(timezone.utc)))
    write_atomic(report_path(model_dir, project_id), json.dumps(report, separators=(",", ":")))
