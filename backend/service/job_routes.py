"""`GET /jobs`, `POST /jobs`, `POST /jobs/<id>/cancel` and `GET /events`: background work and what triggered it."""

from __future__ import annotations

from backend.core.errors import BadRequest, NotFound
from backend.jobs.prediction import MAX_JOB_TASKS, job_progress
from backend.jobs.queue import JOB_KINDS, PREDICT_JOB, REVIEW_JOB, TRAIN_JOB, compact
from backend.service.inputs import MAX_ID, parse_id, parse_project_id, query_int
from backend.service.runtime import Runtime

MAX_REQUESTED_TASKS = MAX_JOB_TASKS
LISTED_ITEMS = 20  # task ids and failures a job shows in GET /jobs (with their counts)


def list_jobs(runtime: Runtime, args) -> dict:
    """`limit` (1..200, default 50) jobs per page, of one `project` when given; `before=<id>` gives the next page
    (`next_before` of this one, None on the last page); `total` counts them all. Running predict jobs carry their
    `progress` (total, done, failed, images_per_s, eta_s)."""
    project = query_int(args, "project", None, 1, MAX_ID)
    limit = query_int(args, "limit", 50, 1, 200)
    page = runtime.context.jobs.jobs(project, limit, query_int(args, "before", None, 1, MAX_ID))
    for job in page:
        if job["kind"] == PREDICT_JOB and job["status"] in ("running", "cancelled", "done"):
            job["progress"] = job_progress(runtime.context, job)
        compact(job, LISTED_ITEMS)
    after = page[-1]["id"] if len(page) == limit else None
    return {"jobs": page, "total": runtime.context.jobs.count(project), "next_before": after}


def create_job(runtime: Runtime, body: dict) -> dict:
    """{"project": N, "kind": "predict" | "train" | "review", "tasks": [ids] (predict, optional: default every task without an
    annotation), "overwrite": bool (predict: replace predictions of the current model version)}."""
    project = parse_project_id(body.get("project"), required=True)
    kind = body.get("kind", PREDICT_JOB)
    if kind not in JOB_KINDS:
        raise BadRequest(f"'kind' must be one of {JOB_KINDS}, got {str(kind)[:60]!r}")
    runtime.context.projects.set_up(project)
    if kind in (TRAIN_JOB, REVIEW_JOB):
        job_id, created = runtime.context.scheduler.request(project, kind, "API")
        return {"job": job_id, "created": created}
    tasks = body.get("tasks")
    if tasks is not None:
        if not isinstance(tasks, list) or not tasks or len(tasks) > MAX_REQUESTED_TASKS:
            raise BadRequest(f"'tasks' must be a non-empty list of at most {MAX_REQUESTED_TASKS} task ids")
        tasks = sorted({parse_id(task, "'tasks' entry") for task in tasks})
    overwrite = body.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise BadRequest("'overwrite' must be true or false")
    job_id, created = runtime.context.request_predictions(project, "API", tasks, overwrite, explicit=True)
    return {"job": job_id, "created": created}


def cancel_job(runtime: Runtime, raw_id: str) -> dict:
    """A pending job is cancelled at once; a running one stops between two steps ("cancelling" until then)."""
    job_id = parse_id(raw_id, "job id")
    status = runtime.context.jobs.request_cancel(job_id)
    if status is None:
        raise NotFound(f"there is no job {job_id}")
    return {"job": job_id, "status": status}


def list_events(runtime: Runtime, args) -> dict:
    """At most `limit` (1..1000, default 100) webhook events, of one `project` when given."""
    project = query_int(args, "project", None, 1, MAX_ID)
    return {"events": runtime.context.events.recent(project, query_int(args, "limit", 100, 1, 1000))}
