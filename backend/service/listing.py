"""`GET /jobs` and `GET /events`: what the backend did and received, newest first, a page at a time."""

from __future__ import annotations

from backend.service.inputs import MAX_ID, query_int
from backend.service.runtime import Runtime


def list_jobs(runtime: Runtime, args) -> dict:
    """`limit` (1..200, default 50) jobs per page, of one `project` when given; `before=<id>` gives the next page
    (`next_before` of this one, None on the last page); `total` counts them all."""
    project = query_int(args, "project", None, 1, MAX_ID)
    limit = query_int(args, "limit", 50, 1, 200)
    page = runtime.jobs.jobs(project, limit, query_int(args, "before", None, 1, MAX_ID))
    after = page[-1]["id"] if len(page) == limit else None
    return {"jobs": page, "total": runtime.jobs.count(project), "next_before": after}


def list_events(runtime: Runtime, args) -> dict:
    """At most `limit` (1..1000, default 100) webhook events, of one `project` when given."""
    project = query_int(args, "project", None, 1, MAX_ID)
    return {"events": runtime.events.recent(project, query_int(args, "limit", 100, 1, 1000))}
