"""Background pre-annotation: a `predict` job pre-labels a project's tasks through the same code as `/predict`
(`backend.predictions.tasks`) and writes the predictions back in bulk (`POST /api/projects/N/import/predictions`).

- Which tasks: the job lists the project's tasks through the Label Studio API (never trusting a webhook body).
  Without a task list: every task that has no annotation and no prediction of the current model_version; with
  `tasks`: exactly those; `overwrite` replaces a prediction of the current model_version instead of skipping it.
  Requests for one pending job coalesce (`merge_options`); ids asked for by name while it covers every task are kept
  as `listed` and predicted as a listed job would.
- Parts: the tasks are split into parts of `PREDICT_PART_TASKS` (`backend.jobs.parts`) that the job's process runs one
  after the other and RQ workers (with `REDIS_URL`) claim in parallel; chunks of `CHUNK` images take the device
  at background priority (interactive requests and `/predict` go first, `backend.core.device`).
- Crash safety: a part retaken after a crash asks Label Studio which of its tasks already carry a prediction of the
  model_version (made by this job) and skips them, so no task gets two and none is skipped.
- One model_version per job: the plan and each part resolve the pipeline once, its models loaded
  (`PipelineSelector.resolve`: `auto` hands over there, before anything runs), and every part writes under the
  version the plan listed tasks for. A part that finds another pipeline serving (a new version activated since the
  plan, or weights that load in the planning process but not in this one) stores nothing, cancels the parts not
  started and marks the job superseded; the job then requests a new predict job, which lists again for the version
  serving now. So no task gets two predictions of one version, and none is stored under a version it was not made
  by.
- A task whose image cannot be used is listed with its reason in the result and does not stop the job.
- Before the first task: the labels the pipeline cannot pre-label are recorded (no label at all: the job fails
  saying what to do), Label Studio's project settings are brought in line (`backend.jobs.project_setup`), and the
  project's image clusters are fitted when it has none (`backend.predictions.clusters`); each prediction is then
  stored with its cluster.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from backend.core.device import BACKGROUND
from backend.core.errors import BadRequest, Cancelled, JobCancelled
from backend.core.cancel import NEVER
from backend.jobs.calibration import refresh_calibration
from backend.jobs.outage import riding_out, wait_for_label_studio
from backend.jobs.project_setup import (project_coverage, project_pipeline, sync_label_studio_project,
                                        wait_until_connected)
from backend.labelstudio.api import create_prediction, delete_prediction, import_predictions, list_tasks, \
    task_predictions
from backend.labelstudio.status import OK
from backend.predictions.clusters import fit_clusters, load_clusters, sample_evenly
from backend.predictions.request import PredictRequest
from backend.predictions.tasks import CHUNK, image_embeddings, image_urls, mirror_regions, raw_scores
from backend.store.scores import DEFAULT_MODE

if TYPE_CHECKING:  # annotations only: the context module imports this one
    from backend.jobs.context import JobContext

log = logging.getLogger(__name__)
PROGRESS_LOG_S = 10.0  # at most one progress line per job this often
WAIT_POLL_S = 1.0


MAX_JOB_TASKS = 100_000  # task ids one predict job may hold (requests for more are refused; "all tasks" has no list)


def merge_options(pending: dict, new: dict) -> dict:
    """The options of one pending predict job asked for twice. Two task lists: their union (at most
    `MAX_JOB_TASKS`: `BadRequest` beyond), overwrite if either overwrites. Every task (no list) and a list: every task
    with the first's `overwrite`, and the list kept as `listed` (with `listed_overwrite`): those tasks are predicted
    as a listed job would (annotated ones too; replaced when that request overwrites), the others as before. So a
    "Retrieve Predictions" of annotated tasks that joins the Connect's job still gets them, and one overwrite of a few
    tasks does not re-predict the whole project."""
    if pending.get("tasks") is not None and new.get("tasks") is not None:
        return {"tasks": _capped(set(pending["tasks"]) | set(new["tasks"]), "task ids"),
                "overwrite": bool(pending.get("overwrite") or new.get("overwrite"))}
    every = [o for o in (pending, new) if o.get("tasks") is None]
    lists = [o for o in (pending, new) if o.get("tasks") is not None]
    listed = set().union(*(o.get("listed") or () for o in every), *(o["tasks"] for o in lists))
    merged = {"tasks": None, "overwrite": any(bool(o.get("overwrite")) for o in every)}
    if listed:
        merged["listed"] = _capped(listed, "listed task ids")
        merged["listed_overwrite"] = any(bool(o.get("listed_overwrite")) for o in every) or \
            any(bool(o.get("overwrite")) for o in lists)
    return merged


def _capped(ids: set, what: str) -> list[int]:
    if len(ids) > MAX_JOB_TASKS:
        raise BadRequest(f"the project's pending predict job would hold {len(ids)} {what}, over {MAX_JOB_TASKS}: "
                         "wait for it to start, or ask for every task without a prediction (no 'tasks')")
    return sorted(ids)


def tasks_to_predict(tasks: list[dict], options: dict) -> tuple[list[dict], dict, list[dict]]:
    """(tasks to predict as {"id", "data"}, {reason: count} of those skipped, failed [{"task", "reason"}] for
    requested ids the project does not have). `tasks` as `backend.labelstudio.api.list_tasks` lists them for the
    current model version; `options` as `merge_options` leaves them."""
    wanted = set(options["tasks"]) if options.get("tasks") is not None else None
    listed = set(options.get("listed") or ()) if wanted is None else wanted
    todo, skipped = [], {"annotated": 0, "already predicted": 0}
    for task in tasks:
        if wanted is not None and task["id"] not in wanted:
            continue
        named = task["id"] in listed
        overwrite = options.get("overwrite") or (named and options.get("listed_overwrite"))
        if not named and task["total_annotations"] > 0:
            skipped["annotated"] += 1
        elif task["has_version"] and not overwrite:
            skipped["already predicted"] += 1
        else:
            todo.append({"id": task["id"], "data": task["data"]})
    missing = sorted(listed - {t["id"] for t in tasks})
    return todo, skipped, [{"task": task_id, "reason": "not a task of this project"} for task_id in missing]


def run_predict_job(context: JobContext, job: dict, stop) -> dict:
    """The `predict` job handler: plan the parts (first attempt), hand them to RQ workers when there are, run
    parts here until none is left, wait for the others; returns the result (see `summary`)."""
    job_id = job["id"]
    if not context.parts.exists(job_id):
        _plan(context, job, stop)
    if context.scheduler.dispatcher is not None:
        for part in context.parts.pending_parts(job_id):
            context.scheduler.dispatch_part(job_id, part)
    context.jobs.set_progress(job_id, {"baseline_done": context.parts.summary(job_id)["done"]})
    try:
        while True:
            part = context.parts.claim(job_id)
            if part is None:
                if not context.parts.summary(job_id)["parts"].get("running"):
                    break
                stop.check()
                stop.wait(WAIT_POLL_S)  # other workers are running parts: wait for them (or take over dead ones)
                continue
            run_part(context, job, part, stop)
    except JobCancelled as exc:
        exc.result = summary(context, context.jobs.get(job_id) or job)
        raise
    result = summary(context, context.jobs.get(job_id) or job)
    _last_log.pop(job_id, None)
    if result.get("superseded_by"):  # another pipeline serves now: a new job lists the tasks for its version
        requested = context.repeat_predictions(int(job["project_id"]), "VERSION_CHANGED", job.get("options") or {})
        result["next_job"] = requested[0] if requested else None
        return result
    if result["model_version"]:  # again at the end: Label Studio's Connect may have written its default meanwhile
        # a job over every task completes its version; one over listed tasks leaves a shown version of ours in place
        _sync_settings(context, int(job["project_id"]), result["model_version"],
                       complete=(job.get("options") or {}).get("tasks") is None)
    return result


def _plan(context: JobContext, job: dict, stop) -> None:
    project_id, options = int(job["project_id"]), job.get("options") or {}
    pipeline, ontology, params = _pipeline(context, project_id)
    coverage = project_coverage(context, project_id, pipeline)
    if coverage.nothing_predicted:
        raise BadRequest(coverage.message())
    riding_out(context, stop, lambda: wait_until_connected(context, project_id), f"project {project_id}: its model")
    _sync_settings(context, project_id, pipeline.model_version, complete=False)
    tasks = riding_out(context, stop, lambda: list_tasks(context.connection, project_id, pipeline.model_version),
                       f"project {project_id}: listing tasks")
    try:
        refresh_calibration(context.connection, context.settings.model_dir, context.scores, project_id, ontology,
                            context.settings.calibration_refresh_s, params.review_score,
                            annotated=sum(task["total_annotations"] > 0 for task in tasks))
    except Exception as exc:  # noqa: BLE001 - the export failed: predict with the calibration stored before (or none)
        log.warning("project %s: score calibration not refreshed: %s", project_id, exc)
    todo, skipped, missing = tasks_to_predict(tasks, options)
    _fit_clusters(context, project_id, todo, ontology, len(tasks))
    size = context.settings.predict_part_tasks
    parts = [todo[i:i + size] for i in range(0, len(todo), size)]
    context.parts.plan(job["id"], parts)
    context.jobs.set_progress(job["id"], {"planned": len(todo)})
    context.jobs.set_plan(job["id"], {"model_version": pipeline.model_version, "listed": len(tasks),
                                      "skipped": skipped, "unknown_tasks": missing,
                                      "not_predicted": coverage.missing})
    log.info("job %s (predict, project %s): %d of %d tasks to predict with %s (skipped: %s)", job["id"], project_id,
             len(todo), len(tasks), pipeline.model_version, skipped)


def _sync_settings(context: JobContext, project_id: int, model_version: str, complete: bool = True) -> None:
    """Label Studio's project settings for `model_version` (`backend.jobs.project_setup`; `complete`: the job has
    written all it planned); a failure is logged and kept for /health, never fatal: the predictions still help."""
    try:
        sync_label_studio_project(context, project_id, model_version, complete)
    except Exception as exc:  # noqa: BLE001
        log.warning("project %s: Label Studio project settings not updated: %s", project_id, exc)


def _fit_clusters(context: JobContext, project_id: int, todo: list[dict], ontology, listed: int) -> None:
    """Fit the project's image clusters on a sample of the tasks to predict when it has none (or the project has
    grown, `Clusters.stale`); the sample's images load through the image cache the prediction then reads."""
    try:
        _fit_clusters_now(context, project_id, todo, ontology, listed)
    except Exception as exc:  # noqa: BLE001 - clusters only order the work; the predictions matter
        log.warning("project %s: image clusters not fitted: %s", project_id, exc)


def _fit_clusters_now(context: JobContext, project_id: int, todo: list[dict], ontology, listed: int) -> None:
    path = context.clusters_path(project_id)
    stored = load_clusters(path)
    images = ontology.with_controls(lambda c: not c.is_video)
    if not todo or not images.controls or (stored is not None and not stored.stale(listed)):
        return
    sample = sample_evenly(todo)
    _, wanted = image_urls(sample, images)
    first = {}
    for index, _, url in wanted:
        first.setdefault(index, url)
    futures = [context.images.submit(url, sample[index]["id"]) for index, url in first.items()]
    pixels = []
    for future in futures:
        try:
            pixels.append(future.result().pixels)
        except Exception:  # noqa: BLE001 - a broken image is reported when the task is predicted
            continue
    if not pixels:
        return
    embedder = context.models.embedder.get()  # loaded before taking the device: never blocks others while loading
    with context.gate.hold(BACKGROUND):
        vectors = embedder.embed(pixels)
    clusters = fit_clusters(vectors, listed)
    clusters.save(path)
    log.info("project %s: %d image clusters fitted on %d tasks", project_id, len(clusters.centroids), len(pixels))


def _pipeline(context: JobContext, project_id: int):
    """(pipeline, ontology, predict params) serving the project now, the pipeline's models loaded."""
    pipeline, ontology, params = project_pipeline(context, project_id, load=True)
    return pipeline, ontology, params.predict


def run_part(context: JobContext, job: dict, part: dict, stop) -> None:
    """Predict one claimed part chunk by chunk. While the device works on a chunk, the next chunk's images download
    into the image cache and the previous chunk's predictions are imported (one import at a time, in order);
    progress (and the part's heartbeat) once a chunk is imported. Stops with `Cancelled` (part back to pending) or
    `JobCancelled` (the job's remaining parts cancelled), after the import in flight is settled."""
    job_id, number, project_id = job["id"], part["part"], int(job["project_id"])
    try:
        pipeline, ontology, params = _pipeline(context, project_id)
        _same_version(pipeline, _planned_version(context, job))
        request = PredictRequest(pipeline, ontology, params, BACKGROUND)
        tasks = part["tasks"]
        if part["attempts"] > 1:  # retaken: skip what an earlier attempt already wrote
            tasks = [t for t in tasks if not riding_out(
                context, stop, lambda t=t: _predicted_by_job(context, t["id"], pipeline.model_version, job),
                f"job {job_id}: checking task {t['id']}")]
        tally = _Tally(done=len(part["tasks"]) - len(tasks))
        predictor = context.predictor(project_id, params, with_clusters=True)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prediction-import") as importer:
            pending = None
            try:
                for start in range(0, len(tasks), CHUNK):
                    stop.check()
                    chunk = tasks[start:start + CHUNK]
                    upcoming = tasks[start + CHUNK:start + 2 * CHUNK]
                    for group in (chunk, upcoming):  # this chunk's downloads first (no-op once started)
                        predictor.prefetch(group, [t["id"] for t in group], ontology)
                    if (job.get("options") or {}).get("overwrite"):
                        _delete_existing(context, chunk, pipeline.model_version)
                    predictions = predictor.predict(chunk, [t["id"] for t in chunk], request)
                    predictions = _again_after_outage(context, stop, predictor, chunk, predictions, request)
                    _heartbeat(context, job, number, tally)
                    previous, pending = pending, None
                    _settle(context, job, number, previous, tally)
                    if tally.done and not tally.synced:  # the version has predictions now: Label Studio accepts it
                        _sync_settings(context, project_id, pipeline.model_version, complete=False)
                        tally.synced = True
                    pending = importer.submit(_store, context, job, pipeline.model_version, predictions,
                                              stop, params.review_score), len(chunk)
            except BaseException:
                try:  # what was imported still counts; the stop (or first error) is what propagates
                    _settle(context, job, number, pending, tally)
                except Exception:  # noqa: BLE001
                    log.exception("job %s part %s: the import in flight failed while stopping", job_id, number)
                raise
            _settle(context, job, number, pending, tally)
    except JobCancelled:
        context.parts.finish(job_id, number, "cancelled")
        context.parts.cancel_pending(job_id)
        raise
    except Cancelled:
        context.parts.finish(job_id, number, "pending")
        raise
    except VersionChanged as exc:
        log.warning("job %s part %s: %s; the job is superseded", job_id, number, exc)
        context.parts.finish(job_id, number, "cancelled")
        context.parts.cancel_pending(job_id)
        _mark_superseded(context, job_id, exc.model_version)
        return
    context.parts.finish(job_id, number, "done")


class VersionChanged(Exception):
    """Another pipeline (`model_version`) serves the project than the one the job planned for."""

    def __init__(self, planned: str, model_version: str):
        super().__init__(f"planned for {planned}, but {model_version} serves the project now")
        self.model_version = model_version


def _planned_version(context: JobContext, job: dict) -> str | None:
    stored = context.jobs.get(job["id"]) or job
    return ((stored.get("result") or {}).get("plan") or {}).get("model_version")


def _same_version(pipeline, planned: str | None) -> None:
    """Raise `VersionChanged` when `pipeline` is not the planned version (no plan: nothing to compare)."""
    if planned and pipeline.model_version != planned:
        raise VersionChanged(planned, pipeline.model_version)


def _mark_superseded(context: JobContext, job_id: int, model_version: str) -> None:
    """Record in the job's plan that `model_version` serves now (the job's end requests a new predict job)."""
    stored = context.jobs.get(job_id) or {}
    plan = dict(((stored.get("result") or {}).get("plan")) or {})
    plan["superseded_by"] = model_version
    context.jobs.set_plan(job_id, plan)


@dataclass
class _Tally:
    """A part's running totals: tasks stored, images done, wall seconds since the part started (until the last
    chunk was stored), failures; whether Label Studio's project settings were synced since predictions exist."""

    done: int = 0
    images: int = 0
    seconds: float = 0.0
    failed: list = field(default_factory=list)
    mark: float = field(default_factory=time.perf_counter)
    synced: bool = False


def _again_after_outage(context: JobContext, stop, predictor, chunk: list[dict], predictions: list,
                        request: PredictRequest):
    """When tasks of a chunk failed while Label Studio is down (their images could not be downloaded), wait for it
    (`backend.jobs.outage`) and predict those tasks again; the predictions with the retried ones in place."""
    failed = [i for i, p in enumerate(predictions) if p.error is not None]
    if not failed or context.label_studio.refresh().state == OK:
        return predictions
    log.warning("job: %d tasks failed while Label Studio is unreachable; waiting to retry them", len(failed))
    wait_for_label_studio(context, stop, context.settings.label_studio_outage_s)
    again = [chunk[i] for i in failed]
    retried = predictor.predict(again, [t["id"] for t in again], request)
    predictions = list(predictions)
    for i, prediction in zip(failed, retried):
        predictions[i] = prediction
    return _again_after_outage(context, stop, predictor, chunk, predictions, request)


def _store(context: JobContext, job: dict, model_version: str, predictions: list, stop=NEVER,
           review_score: str = DEFAULT_MODE) -> tuple[list, list[dict]]:
    """Import one chunk's predictions; record their raw scores. Returns (stored predictions, failed
    [{"task", "reason"}]). While Label Studio is down the writes wait for it (`riding_out`); a write retried after
    an outage first asks whether the lost attempt was stored (no task gets two predictions of one version)."""
    project_id = int(job["project_id"])
    ok = [p for p in predictions if p.error is None]
    entries = [{"task": p.task_id, "result": p.result, "score": p.score, "model_version": model_version}
               for p in ok]
    failed = []
    if any(p.cluster is not None for p in ok):  # the bulk import drops `cluster`: one request per prediction
        refused = []
        for p, entry in zip(ok, entries):
            _, reason = riding_out(context, stop, _once(
                lambda: create_prediction(context.connection, {**entry, "cluster": p.cluster}),
                lambda: _predicted_by_job(context, p.task_id, model_version, job), (None, "")),
                f"storing the prediction of task {p.task_id}")
            if reason:
                refused.append(p)
                failed.append({"task": p.task_id, "reason": reason})
        ok = [p for p in ok if p not in refused]
    elif riding_out(context, stop, _once(
            lambda: import_predictions(context.connection, project_id, entries),
            lambda: all(_predicted_by_job(context, p.task_id, model_version, job) for p in ok), len(ok)),
            f"storing {len(ok)} predictions") < len(ok):
        # Label Studio dropped some (its own validation): find them, report them
        refused = [p for p in ok if not _predicted_by_job(context, p.task_id, model_version, job)]
        ok = [p for p in ok if p not in refused]
        failed += [{"task": p.task_id, "reason": "Label Studio refused the prediction (its validation)"}
                   for p in refused]
    context.scores.record(project_id, model_version, raw_scores(ok), review_score, mirror_regions(ok),
                          image_embeddings(ok))
    return ok, failed + [{"task": p.task_id, "reason": p.error} for p in predictions if p.error is not None]


def _once(write, stored, stored_result):
    """A write to retry after an outage: the first call writes; later calls first ask `stored()` whether a lost
    attempt got through, and answer `stored_result` then instead of writing again."""
    attempts = [0]

    def call():
        attempts[0] += 1
        if attempts[0] > 1 and stored():
            return stored_result
        return write()
    return call


def _heartbeat(context: JobContext, job: dict, number: int, tally: _Tally) -> None:
    """The part's totals as they stand (its heartbeat: a part silent for `STALE_S` is taken over)."""
    context.parts.progress(job["id"], number, tally.done, tally.images, tally.seconds, tally.failed)


def _settle(context: JobContext, job: dict, number: int, pending, tally: _Tally) -> None:
    """Wait for the import in flight (if any) and record the part's progress; an import error propagates."""
    if pending is None:
        return
    future, images = pending
    ok, failed = future.result()
    now = time.perf_counter()
    tally.done, tally.images, tally.seconds = tally.done + len(ok), tally.images + images, tally.seconds + now - tally.mark
    tally.mark = now
    tally.failed += failed
    _heartbeat(context, job, number, tally)
    _log_progress(context, job)


def _predicted_by_job(context: JobContext, task_id: int, model_version: str, job: dict) -> bool:
    """Whether the task carries a prediction of `model_version` (made since the job was created, when it
    overwrites)."""
    for prediction in task_predictions(context.connection, task_id):
        if prediction.get("model_version") != model_version:
            continue
        if not (job.get("options") or {}).get("overwrite") or _epoch(prediction.get("created_at")) >= job["created_at"]:
            return True
    return False


def _delete_existing(context: JobContext, tasks: list[dict], model_version: str) -> None:
    for task in tasks:
        for prediction in task_predictions(context.connection, task["id"]):
            if prediction.get("model_version") == model_version:
                delete_prediction(context.connection, prediction["id"])


def _epoch(iso: str | None) -> float:
    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


_last_log: dict[int, float] = {}


def _log_progress(context: JobContext, job: dict) -> None:
    now = time.monotonic()
    if now - _last_log.get(job["id"], 0.0) < PROGRESS_LOG_S:
        return
    _last_log[job["id"]] = now
    progress = job_progress(context, context.jobs.get(job["id"]) or job)
    log.info("job %s (predict, project %s): %d/%d tasks, %d failed, %.2f images/s, ETA %s s", job["id"],
             job["project_id"], progress["done"], progress["total"], progress["failed"], progress["images_per_s"],
             progress["eta_s"])


def job_progress(context: JobContext, job: dict) -> dict:
    """{"total", "done", "failed", "images_per_s", "eta_s"} of a predict job (rate since this attempt started)."""
    parts = context.parts.summary(job["id"])
    baseline = (job.get("progress") or {}).get("baseline_done", 0)
    end = job.get("finished_at") if job.get("status") in ("done", "failed", "cancelled") else None
    elapsed = max((end or time.time()) - (job.get("started_at") or time.time()), 1e-6)
    rate = max(parts["done"] - baseline, 0) / elapsed
    remaining = parts["tasks"] - parts["done"] - len(parts["failed"])
    eta = round(remaining / rate) if rate > 0 else None
    return {"total": parts["tasks"], "done": parts["done"], "failed": len(parts["failed"]),
            "images_per_s": round(rate, 3), "eta_s": eta if remaining > 0 else 0, "parts": parts["parts"]}


def summary(context: JobContext, job: dict) -> dict:
    """The result of a predict job: plan (model_version, tasks listed and skipped) + progress + failed tasks."""
    parts = context.parts.summary(job["id"])
    plan = (job.get("result") or {}).get("plan", {})
    failed = parts["failed"] + plan.get("unknown_tasks", [])
    return {"model_version": plan.get("model_version"), "listed": plan.get("listed"), "skipped": plan.get("skipped"),
            "not_predicted": plan.get("not_predicted") or {},
            "total": parts["tasks"], "predicted": parts["done"], "failed": failed,
            "images_per_s": job_progress(context, job)["images_per_s"], "workers": parts["workers"],
            **({"superseded_by": plan["superseded_by"]} if plan.get("superseded_by") else {})}
