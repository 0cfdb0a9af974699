"""`POST /webhook`: record the event and answer at once (Label Studio waits at most 1 s).

Protection: Label Studio's own webhook sends no credentials, so the body is treated as a hint only.
Only the action name and ids are taken from it; annotations are always re-read from the Label
Studio API with the backend's own token by the job that the event triggers. A forged event can
therefore at worst cause a coalesced re-read of real data, never inject training data.
"""

from __future__ import annotations

from backend.core.errors import BadRequest
from backend.jobs.training import ANNOTATION_ACTIONS, should_train
from backend.service.runtime import Runtime

KNOWN_ACTIONS = (*ANNOTATION_ACTIONS, "START_TRAINING")


def _int_or_none(value) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def handle_webhook(runtime: Runtime, body: dict) -> dict:
    action = body.get("action")
    if not isinstance(action, str) or not action:
        raise BadRequest("webhook body needs an 'action' string")
    runtime.metrics.webhooks.labels(action).inc()
    if action not in KNOWN_ACTIONS:
        return {"status": "ignored", "action": action}
    project = body.get("project")
    annotation = body.get("annotation") if isinstance(body.get("annotation"), dict) else {}
    project_id = _int_or_none(project.get("id") if isinstance(project, dict) else project)
    if project_id is None:
        project_id = _int_or_none(annotation.get("project"))
    event_id = runtime.store.record_event(action, project_id, _int_or_none(annotation.get("id")),
                                          _int_or_none(annotation.get("task")))
    reply = {"status": "accepted", "action": action, "project": project_id, "event": event_id}
    if project_id is None:
        return reply
    trigger = action == "START_TRAINING"
    if action in ANNOTATION_ACTIONS:
        last = runtime.jobs.last_finished(project_id, "train")
        reported = _int_or_none(project.get("total_annotations_number")) if isinstance(project, dict) else None
        trigger = should_train(runtime.store, project_id, runtime.project_params(project_id),
                               last["created_at"] if last else None, reported)
    if trigger:
        reply["job"], reply["job_created"] = runtime.request_training(project_id, action)
    return reply
