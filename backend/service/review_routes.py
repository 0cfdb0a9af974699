"""`GET /review?project=N` (the review page), `GET /review.json?project=N` (its report) and
`POST /review/refresh?project=N` (compute it again), over the `review` job and its cache (`backend.jobs.review`).

| state | `/review` | `/review.json` |
| --- | --- | --- |
| cached report | 200, the cached page with its age (a note when a refresh is queued or the last one failed) | 200, the report + `"status": "ready"` (+ `"refreshing": job` while one is queued) |
| nothing cached, job queued or running | 202, a small page that reloads itself and shows the job's progress | 202, `{"status": "computing", "job", "progress"}` |
| nothing cached, last job failed | 503, the job's error and a "Try again" button | 503, `{"status": "failed", "job", "error"}` |

A `GET` with nothing cached queues a job only when none is pending or running (and none failed since the last
refresh request), so a page reloading itself never piles up jobs. `POST /review/refresh` always asks for a new
report: 202 `{"status": "computing", "job", "created"}` (coalesced with the project's pending review job).
Bad input: 400 naming the parameter (missing, not a whole number, out of range); a project never set up: 404.
"""

from __future__ import annotations

from flask import Response, jsonify

from backend.jobs.review import KIND, read_cached_page, read_cached_report
from backend.review.html import page_for_now, status_page
from backend.service.inputs import parse_project_id
from backend.service.runtime import Runtime

ACTIVE = ("pending", "running")
RETRY_AFTER_S = 3
RECENT_JOBS = 20


def _project(runtime: Runtime, args) -> int:
    project = parse_project_id(args.get("project"), required=True)
    runtime.context.projects.set_up(project)
    return project


def _latest_review_job(runtime: Runtime, project: int) -> dict | None:
    """The project's newest review job (pending, running or finished), or None."""
    jobs = runtime.context.jobs.jobs(project, RECENT_JOBS, kind=KIND)
    return jobs[0] if jobs else None


def _state(runtime: Runtime, project: int, queue: bool) -> tuple[dict | None, dict | None]:
    """(cached report or None, the review job to talk about or None); with nothing cached and no job (or only
    finished ones that succeeded: the cache was removed), a job is queued when `queue`."""
    report = read_cached_report(runtime.settings.model_dir, project)
    job = _latest_review_job(runtime, project)
    if report is None and queue and (job is None or job["status"] in ("done", "cancelled")):
        job_id, _ = runtime.context.request_review(project, "PAGE")
        job = runtime.context.jobs.get(job_id)
    return report, job


def _notice(job: dict | None, report: dict) -> str:
    if job is None or job["id"] == report.get("job"):
        return ""
    if job["status"] in ACTIVE:
        return f"A new report is being computed (job {job['id']}, {job['status']}); reload when it is done."
    if job["status"] == "failed":
        return f"The last refresh (job {job['id']}) failed: {job['message']}; this is the previous report."
    return ""


def review_page(runtime: Runtime, args) -> Response:
    project = _project(runtime, args)
    report, job = _state(runtime, project, queue=True)
    if report is not None:
        page = read_cached_page(runtime.settings.model_dir, project)
        if page is not None:
            page = page_for_now(page, report["generated_at"], notice=_notice(job, report))
            return Response(page, 200, mimetype="text/html")
    if job is not None and job["status"] == "failed":
        page = status_page(project, job=job["id"], status="failed", message=job["message"])
        return Response(page, 503, {"Retry-After": str(RETRY_AFTER_S)}, mimetype="text/html")
    page = status_page(project, job=job["id"] if job else None, status="computing",
                       progress=job.get("progress") if job else None, refresh_s=RETRY_AFTER_S)
    return Response(page, 202, {"Retry-After": str(RETRY_AFTER_S)}, mimetype="text/html")


def review_json(runtime: Runtime, args):
    project = _project(runtime, args)
    report, job = _state(runtime, project, queue=True)
    if report is not None:
        body = {**report, "status": "ready"}
        if job is not None and job["status"] in ACTIVE and job["id"] != report.get("job"):
            body["refreshing"] = job["id"]
        return jsonify(body)
    if job is not None and job["status"] == "failed":
        return jsonify({"status": "failed", "job": job["id"], "error": job["message"]}), 503, \
            {"Retry-After": str(RETRY_AFTER_S)}
    return jsonify({"status": "computing", "job": job["id"] if job else None,
                    "progress": job.get("progress", {}) if job else {}}), 202, {"Retry-After": str(RETRY_AFTER_S)}


def refresh_review(runtime: Runtime, args):
    project = _project(runtime, args)
    job_id, created = runtime.context.request_review(project, "REFRESH")
    return jsonify({"status": "computing", "job": job_id, "created": created}), 202


def register(app, runtime: Runtime) -> None:
    """Add the three routes to `app`."""
    from flask import request

    app.add_url_rule("/review", "review", lambda: review_page(runtime, request.args))
    app.add_url_rule("/review.json", "review_json", lambda: review_json(runtime, request.args))
    app.add_url_rule("/review/refresh", "review_refresh", lambda: refresh_review(runtime, request.args),
                     methods=["POST"])
