"""`POST /setup`: Label Studio connects a project (and asks again on every view of its Model page and before each
"Retrieve predictions"). The label config and extra params are validated (a 400 names what is wrong), stored per
project, and the answer names the model version that will serve.

Connect = ready: a first (or changed) setup enqueues a predict job for every task without a current prediction
(`auto_predict`), and schedules the follow-up (`backend.service.followups`): which labels can be pre-labelled, and
Label Studio's project settings (model version, task sampling).

Failures reach the admin through Label Studio's own UI: while pre-labelling cannot work, `/setup` answers 503 with
the reason in the HTTP status line (Label Studio shows "503 Server Error: <reason> for url: …" and marks the model
"Error"): Label Studio unreachable or refusing the backend's token, or the project's last predict job failed on
every task (retried by the next `/setup` once it is `RETRY_AFTER_S` old).
"""

from __future__ import annotations

import time

from backend.core.errors import ModelUnavailable, PrelabellingFails
from backend.core.params import ProjectParams
from backend.labelstudio.config import parse_label_config
from backend.service.inputs import parse_json_object, parse_project_id
from backend.service.runtime import Runtime
from backend.jobs.queue import PREDICT_JOB
from backend.registry.versions import untrained_version

RETRY_AFTER_S = 300.0  # a failed predict job is tried again by the next /setup after this long
CONNECT_GRACE_S = 10.0  # a predict job younger than this belongs to a Connect still in progress: not reported yet


def handle_setup(runtime: Runtime, body: dict, authenticated: bool) -> dict:
    """`authenticated`: the caller passed basic auth (then a `hostname` may name Label Studio, see
    `LabelStudioConnection.update_from_setup`)."""
    project_id = parse_project_id(body.get("project"))
    extra = body.get("extra_params")
    if isinstance(extra, str):
        extra = parse_json_object(extra, "extra_params") if extra.strip() else None
    params = ProjectParams.from_extra(extra)
    schema = body.get("schema") or ""
    ontology = parse_label_config(schema, params.predict)  # reject unsupported configs at connection time
    runtime.context.connection.update_from_setup(body.get("hostname"), body.get("access_token"), trusted=authenticated)
    try:
        model_version = runtime.context.selector.for_project(project_id, params.predict, ontology).model_version
    except ModelUnavailable:  # PIPELINE=trained before the first training: connect, predict later
        model_version = untrained_version(project_id)
    if project_id is not None:
        changed = runtime.context.projects.save(project_id, extra or {}, schema)
        if changed:
            runtime.context.request_predictions(project_id, "SETUP")
        runtime.followups.request(project_id, changed)
        problem = setup_problem(runtime, project_id)
        if problem:
            raise PrelabellingFails(problem)
    return {"model_version": model_version}


def setup_problem(runtime: Runtime, project_id: int) -> str | None:
    """Why pre-labelling cannot work for the project now (None when nothing says so): Label Studio unreachable or
    refusing the token, MODEL_DIR not writable, or the project's newest predict job failed (then, once it is `RETRY_AFTER_S` old, another
    one is enqueued and the project counts as fine while it runs). A job younger than `CONNECT_GRACE_S` is not
    reported: Label Studio's Connect calls /setup twice in a row, and failing the second call would show the admin
    "Failed to add new ML backend" for a model that was added."""
    status = runtime.context.label_studio.current()
    if status.failing:
        return status.message()
    storage = runtime.storage.current()
    if storage["state"] != "ok":
        return storage["error"]
    if not runtime.context.project_params(project_id).predict.auto_predict:
        return None  # the admin runs predict jobs by hand: a failed one is theirs to look at (/jobs), not a retry
    (latest,) = runtime.context.jobs.jobs(project_id, limit=1, kind=PREDICT_JOB) or (None,)
    if latest is None or latest["status"] != "failed" or time.time() - latest["created_at"] < CONNECT_GRACE_S:
        return None
    if time.time() - (latest.get("finished_at") or 0) >= RETRY_AFTER_S:
        if runtime.context.request_predictions(project_id, "RETRY") is not None:
            return None
    return f"pre-labelling failed for project {project_id}: {latest['message']} (job {latest['id']}: GET /jobs)"
