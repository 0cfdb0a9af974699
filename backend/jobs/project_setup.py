"""What makes a connected project usable with no further step (run after `/setup` and by every predict job):

- **coverage**: which labels of the config the serving pipeline can pre-label, and the fix for the others
  (`backend.pipelines.coverage`), stored with the project for `/health`, job results and the review page;
- **Label Studio's project settings** (`settings_changes`, the rule): the project's `model_version` is the version
  this service serves, so the Data Manager's score column, its sort and the pre-labels shown to annotators use our
  predictions; with `task_order` "uncertainty" (default) the project's sampling becomes "Uncertainty sampling", so
  "Label All Tasks" serves the lowest-scored task first, spread over the predictions' clusters. A setting the
  admin changed afterwards is never overwritten. A version this service set that still has predictions is replaced
  only once the predict job of the new one has ended (`complete`), so tasks it has not reached keep a pre-label.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from backend.adapters.base import without_loading
from backend.core.errors import BadRequest, ModelUnavailable
from backend.core.settings import WEBHOOK_SECRET_HEADER
from backend.labelstudio.api import (model_versions, project_settings, project_webhooks, update_project,
                                     update_webhook_headers)
from backend.labelstudio.config import parse_label_config
from backend.pipelines.coverage import Coverage, with_learning
from backend.jobs.queue import PREDICT_JOB

if TYPE_CHECKING:  # annotations only: the context module imports this one
    from backend.jobs.context import JobContext

log = logging.getLogger(__name__)
SEQUENTIAL = "Sequential sampling"  # Label Studio's default task sampling
UNCERTAINTY = "Uncertainty sampling"  # lowest prediction score of the project's model_version first, by cluster


def settings_changes(current: dict, managed: dict, model_version: str, predicted_versions: list[str],
                     model_names: list[str], task_order: str, complete: bool = True) -> dict:
    """The Label Studio project settings to write now ({} when none).

    current: the project as Label Studio serves it (`model_version`, `sampling`); managed: what this service wrote
    before ({setting: value}); predicted_versions: the versions the project has predictions of; model_names: the
    titles of the models connected to the project.
    - `model_version` → the served version, once the project has predictions of it (Label Studio refuses a version
      it has no prediction of), while the project's is empty, a connected model's name (what Label Studio sets at
      Connect, and what picking the live model in Settings → Annotation sets) or what this service set before; any
      other value is a version the admin picked: left alone. While the job predicting `model_version` is not
      `complete`, a version this service set before that still has predictions stays: switching then would show
      annotators no pre-label on every task the new version has not reached yet.
    - `sampling` → "Uncertainty sampling" when `task_order` is "uncertainty", the project still has Label Studio's
      default "Sequential sampling" and this service never set it: once, so the admin's later choice stands.
    """
    changes = {}
    now = current.get("model_version") or ""
    ours_before = managed.get("model_version")
    replaces_served = now == ours_before and now in predicted_versions
    if now != model_version and model_version in predicted_versions and \
            (not now or now in model_names or now == ours_before) and (complete or not replaces_served):
        changes["model_version"] = model_version
    if task_order == "uncertainty" and "sampling" not in managed and current.get("sampling") == SEQUENTIAL:
        changes["sampling"] = UNCERTAINTY
    return changes


def sync_label_studio_project(context: JobContext, project_id: int, model_version: str, complete: bool = True) -> dict:
    """Apply `settings_changes` to the Label Studio project (`complete`: the job predicting `model_version` has
    written all it planned); returns the changes written. The outcome is kept with
    the project (`managed["last_sync"]`: when, and the changes or the error) for `/health`; errors propagate."""
    stored = context.projects.get(project_id)
    if stored is None:
        return {}
    task_order = context.project_params(project_id).predict.task_order
    try:
        current = project_settings(context.connection, project_id)
        predicted, models = model_versions(context.connection, project_id)
        changes = settings_changes(current, stored.managed, model_version, predicted, [m["title"] for m in models],
                                   task_order, complete) if models else {}  # no model connected: not ours to change
        if changes:
            update_project(context.connection, project_id, changes)
            log.info("project %s: Label Studio settings set: %s", project_id, changes)
    except Exception as exc:
        context.projects.merge_managed(project_id, {"last_sync": {"at": time.time(), "error": str(exc)[:500]}})
        raise
    context.projects.merge_managed(project_id, {**changes, "last_sync": {"at": time.time(), "changes": changes}})
    return changes


def our_models(models: list[dict], versions: set[str]) -> list[dict]:
    """The connected models (Label Studio's {"title", "url", "model_version"}) that are this service: those whose
    model version is one this service gave the project (Label Studio keeps what `/setup` answered)."""
    return [m for m in models if m.get("model_version") in versions]


def secure_webhooks(context: JobContext, project_id: int, versions: set[str]) -> int:
    """Give the project's Label Studio webhook to this service (the one Label Studio created at Connect: the model's
    URL + "/webhook", for a connected model whose model version is in `versions`) the `X-Webhook-Secret` header
    `/webhook` accepts (never the basic-auth credentials); returns how many webhooks were updated."""
    if not context.webhook_secret:
        return 0
    _, models = model_versions(context.connection, project_id)
    ours = {m["url"].rstrip("/") + "/webhook" for m in our_models(models, versions) if m["url"]}
    wanted = {WEBHOOK_SECRET_HEADER: context.webhook_secret}
    updated = 0
    for hook in project_webhooks(context.connection, project_id):
        headers = hook.get("headers") if isinstance(hook.get("headers"), dict) else {}
        if str(hook.get("url", "")).rstrip("/") in ours and headers.get(WEBHOOK_SECRET_HEADER) != wanted[
                WEBHOOK_SECRET_HEADER]:
            update_webhook_headers(context.connection, hook["id"], {**headers, **wanted})
            updated += 1
    if updated:
        log.info("project %s: %d Label Studio webhook(s) now carry the secret /webhook requires", project_id, updated)
    return updated


def wait_until_connected(context: JobContext, project_id: int, timeout_s: float = 15.0) -> list[dict]:
    """The models connected to the project in Label Studio, waiting up to `timeout_s` for one (Label Studio saves
    the connection just after our `/setup` answered); `BadRequest` when there is none: this service writes into
    a project only when Label Studio has a model connected to it (a `/setup` may come from anyone who reaches the
    port when basic auth is off)."""
    deadline = time.monotonic() + timeout_s
    while True:
        _, models = model_versions(context.connection, project_id)
        if models or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    if not models:
        raise BadRequest(f"project {project_id} has no model connected in Label Studio (Settings > Model): nothing is "
                         "written into it")
    return models


def project_pipeline(context: JobContext, project_id: int, load: bool = False):
    """(pipeline serving the project now, its ontology, its `ProjectParams`); nothing is loaded unless `load` (then
    the pipeline a job runs: `PipelineSelector.resolve`). `ProjectNotSetUp` for a project never set up."""
    project = context.projects.set_up(project_id)
    params = context.project_params(project_id)
    ontology = parse_label_config(project.label_config, params.predict)
    select = context.selector.resolve if load else context.selector.for_project
    return select(project_id, params.predict, ontology), ontology, params


def project_coverage(context: JobContext, project_id: int, pipeline=None) -> Coverage:
    """Which labels the pipeline serving the project (or `pipeline`) pre-labels; stored with the project. Loads the
    pipeline's models when needed."""
    served, ontology, params = project_pipeline(context, project_id)
    pipeline = pipeline or served
    coverage = with_learning(pipeline.coverage(ontology, params.predict), ontology, params.train.min_annotations)
    context.projects.set_coverage(project_id, coverage.as_dict())
    return coverage


def version_complete(context: JobContext, project_id: int, model_version: str) -> bool:
    """Whether `model_version` has been predicted on the whole project: no predict job of the project is pending or
    running, and the last one to finish was done, over every task (no `tasks` list), with this version."""
    if any(int(job["project_id"]) == project_id and job["kind"] == PREDICT_JOB
           for job in context.jobs.running() + context.jobs.pending()):
        return False
    last = context.jobs.last_finished(project_id, PREDICT_JOB)
    return bool(last) and last["status"] == "done" and (last.get("options") or {}).get("tasks") is None and \
        (last.get("result") or {}).get("model_version") == model_version


def after_setup(context: JobContext, project_id: int) -> None:
    """The follow-up of a `/setup` (the service runs it in the background, a few seconds after Label Studio's
    Connect has finished writing the project): coverage (when the pipeline's models are in memory; the predict job
    checks it otherwise), then Label Studio's project settings. Failures are logged and shown by `/health`, never
    raised."""
    try:
        try:
            with without_loading():  # models load in the predict job (or the start-up warm-up), not here
                coverage = project_coverage(context, project_id)
            if coverage.missing:
                log.warning("project %s: %s", project_id, coverage.message())
            model_version = coverage.model_version
        except ModelUnavailable:
            model_version = project_pipeline(context, project_id)[0].model_version
        sync_label_studio_project(context, project_id, model_version,
                                  complete=version_complete(context, project_id, model_version))
        stored = context.projects.get(project_id)
        secure_webhooks(context, project_id, {model_version, stored.managed.get("model_version"),
                                              stored.coverage.get("model_version")} - {None})
    except Exception as exc:  # noqa: BLE001 - reported through /health and the next predict job
        log.warning("project %s: set-up follow-up failed: %s", project_id, exc)

