"""`POST /webhook`: record the event and answer at once (Label Studio waits at most 1 s).

Protection. With basic auth on (`BASIC_AUTH_USER` / `BASIC_AUTH_PASS`) `/webhook` requires it like every other
route, and with `WEBHOOK_SECRET` set it accepts requests carrying `X-Webhook-Secret: <secret>` (without basic auth
it requires that header). Label Studio creates the project webhook itself at Connect, without credentials; the
Connect's follow-up (`backend.jobs.project_setup.secure_webhooks`) adds the headers to it, and "Start training"
comes from the model connection, which sends its basic auth. With neither set, `/webhook` is open.
In every case the body is a hint only: only a known action name and ids are taken from it (anything else is
answered "ignored" and counted under the metric label "other"); annotations and annotation counts are always
re-read from the Label Studio API with the backend's own token by the job that the event triggers. A forged event
can therefore at worst cause a coalesced re-read of real data (and a training's versions are pruned to the active
one and the newest `VERSIONS_KEEP`), never inject training data or start training below the project's thresholds.
"""

from __future__ import annotations

from backend.core.errors import BadRequest
from backend.jobs.training import ANNOTATION_ACTIONS, should_train
from backend.service.inputs import optional_id
from backend.service.runtime import Runtime
from backend.jobs.queue import TRAIN_JOB

# every action Label Studio 1.23 sends (label_studio/webhooks/models.py) plus the ML backend's "Start training"
LABEL_STUDIO_ACTIONS = (
    "PROJECT_CREATED", "PROJECT_UPDATED", "PROJECT_DELETED", "TASKS_CREATED", "TASKS_DELETED",
    "ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "ANNOTATION_DELETED",
    "LABEL_LINK_CREATED", "LABEL_LINK_UPDATED", "LABEL_LINK_DELETED", "START_TRAINING", "TASK_CREATED",
)
TASK_ACTIONS = ("TASKS_CREATED", "TASK_CREATED")  # new tasks: pre-label them in the background
KNOWN_ACTIONS = (*ANNOTATION_ACTIONS, *TASK_ACTIONS, "START_TRAINING")  # the ones that are recorded


def handle_webhook(runtime: Runtime, body: dict) -> dict:
    action = body.get("action")
    if not isinstance(action, str) or not action:
        raise BadRequest("webhook body needs an 'action' string")
    runtime.metrics.webhooks.labels(action if action in LABEL_STUDIO_ACTIONS else "other").inc()
    if action not in KNOWN_ACTIONS:
        return {"status": "ignored", "action": action[:64]}
    project = body.get("project")
    annotation = body.get("annotation") if isinstance(body.get("annotation"), dict) else {}
    project_id = optional_id(project.get("id") if isinstance(project, dict) else project)
    if project_id is None:
        project_id = optional_id(annotation.get("project"))
    event_id = runtime.context.events.record(action, project_id, optional_id(annotation.get("id")),
                                     optional_id(annotation.get("task")))
    reply = {"status": "accepted", "action": action, "project": project_id, "event": event_id}
    if project_id is None or runtime.context.projects.get(project_id) is None:
        return reply  # jobs only for projects Label Studio has set up (/setup): forged ids make no jobs
    trigger = action == "START_TRAINING"
    if action in ANNOTATION_ACTIONS:
        last = runtime.context.jobs.last_finished(project_id, TRAIN_JOB)
        trigger = should_train(runtime.context.events, project_id, runtime.context.project_params(project_id).train,
                               last["created_at"] if last else None)
    if trigger:
        reply["job"], reply["job_created"] = runtime.context.scheduler.request(project_id, TRAIN_JOB, action)
    if action in TASK_ACTIONS:
        queued = runtime.context.request_predictions(project_id, action)
        if queued is not None:
            reply["job"], reply["job_created"] = queued
    return reply
