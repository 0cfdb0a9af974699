"""`POST /predict`: tasks → images → pipeline → Label Studio predictions, one entry per task in order.

Images download in parallel; the pipeline runs on them in chunks of `CHUNK` (8) as they arrive, so
compute overlaps with the downloads still in flight. Admission control (`backend.service.admission`) refuses
work the worker cannot finish in time with a 503; the refused tasks of a project set up through /setup are handed to
its background predict job (`handed_over`), since Label Studio never retries.

A task whose image cannot be used gets an entry without `result` but with an `error` message
(Label Studio logs it and stores the other tasks' predictions); the request still succeeds. When the project's
config has labels the serving pipeline cannot pre-label, every entry carries `warnings` naming them and the fix
(Label Studio stores only `result`, `score` and `model_version`, but shows the whole answer in the model card's
"Send Test Request").

A video task that carries the annotator's boxes (in `params.context.result`, a draft or an annotation:
`backend.labelstudio.video_seeds`) gets them continued through the next frames instead of the pipeline's tracks; an
interactive request on a video-only config goes that way too (the image smart tools need an image).
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import ExitStack

from backend.core.device import INTERACTIVE, PREDICT
from backend.core.errors import BackendError, BadRequest, Overloaded, TaskError
from backend.core.ontology import Ontology
from backend.core.params import PredictParams
from backend.labelstudio.config import parse_label_config
from backend.labelstudio.results import detections_to_results, task_prediction
from backend.labelstudio.video_seeds import carried, seed_regions
from backend.pipelines.coverage import Coverage
from backend.pipelines.interactive import INTERACTIVE_CONTROL_ORDER, parse_context
from backend.predictions.request import PredictRequest
from backend.predictions.tasks import image_embeddings, image_urls, mirror_regions, raw_scores
from backend.service.inputs import optional_id, parse_project_id
from backend.service.runtime import Runtime

log = logging.getLogger(__name__)
CARRY = "video boxes"  # admission's key for requests that carry annotators' video boxes (seconds per frame)


def handle_predict(runtime: Runtime, body: dict) -> dict:
    tasks = body.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise BadRequest("'tasks' must be a non-empty list of Label Studio tasks")
    if not all(isinstance(t, dict) for t in tasks):
        raise BadRequest("every entry of 'tasks' must be a JSON object")
    project_id = parse_project_id(body.get("project"))
    params = runtime.context.project_params(project_id).predict
    ontology = _ontology(runtime, project_id, body.get("label_config"), params)
    context = body["params"].get("context") if isinstance(body.get("params"), dict) else None
    if context and not _video_context(context, ontology):
        return handle_interactive(runtime, tasks, ontology, params, context)
    planned = runtime.context.selector.for_project(project_id, params, ontology)  # nothing loaded: admission's key
    carry, images = _work(tasks, ontology, params, context)
    deadline = runtime.settings.predict_deadline_s  # carrying stops there by itself
    admitted = runtime.admission.admit(CARRY, carry + images, deadline) if carry \
        else runtime.admission.admit(planned.name, images)
    with ExitStack() as held:
        try:
            held.enter_context(admitted)
        except Overloaded as exc:  # Label Studio never retries: hand the tasks to a background job, say which
            raise (exc if carry else handed_over(runtime, project_id, tasks, exc)) from None
        # resolved once, its models loaded inside admission (a cold start holds no thread beyond it); a request that
        # only carries annotators' video boxes runs no pipeline and loads none
        pipeline = runtime.context.selector.resolve(project_id, params, ontology) if images else planned
        predictor = runtime.context.predictor(project_id, params, deadline_s=deadline)
        predictions = predictor.predict(tasks, [optional_id(t.get("id")) for t in tasks],
                                        PredictRequest(pipeline, ontology, params, PREDICT, context))
    for task, prediction in zip(tasks, predictions):
        runtime.metrics.tasks.labels(pipeline.name, "error" if prediction.error else "ok").inc()
        if prediction.error:
            log.warning("task %s: %s", task.get("id"), prediction.error)
            prediction.task_id = task.get("id")  # echo what Label Studio sent
        else:
            runtime.metrics.regions.labels(pipeline.name).inc(len(prediction.result))
    if project_id is not None:  # what the project's score calibration is later fitted on (best effort)
        try:
            runtime.context.scores.record(project_id, pipeline.model_version, raw_scores(predictions),
                                          params.review_score, mirror_regions(predictions),
                                          image_embeddings(predictions))
        except sqlite3.Error as exc:
            log.warning("raw review scores not recorded: %s", exc)
    warnings = coverage_warnings(runtime, project_id, pipeline.model_version)
    return {"results": [{**({"warnings": warnings} if warnings else {}), **p.as_label_studio(pipeline.model_version)}
                        for p in predictions],  # warnings first: Label Studio's Test Request shows the top
            "model_version": pipeline.model_version}


def handed_over(runtime: Runtime, project_id: int | None, tasks: list[dict], refused: Overloaded) -> Overloaded:
    """The refusal of a request admission turned away (`refused`: too much for one request, or busy), with its tasks
    handed to the project's background predict job where they can be: a project set up through /setup, tasks with
    ids. Label Studio's "Retrieve Predictions" sends every selected task in one request and never retries, and the
    Data Manager says "Retrieved N predictions" whatever the answer: the job (no time limit) imports them as it
    runs. Still a 503: nothing is predicted in this request."""
    ids = sorted({i for i in (optional_id(t.get("id")) for t in tasks) if i is not None})
    if project_id is None or not ids or runtime.context.projects.get(project_id) is None:
        return refused
    try:
        queued = runtime.context.request_predictions(project_id, "RETRIEVE", ids, explicit=True)
    except (BackendError, sqlite3.Error) as exc:  # e.g. the pending job would hold too many ids
        log.warning("project %s: %d refused tasks not handed to a predict job: %s", project_id, len(ids), exc)
        return refused
    if queued is None:
        return refused
    job, created = queued
    log.info("project %s: %d tasks refused by /predict handed to predict job %s", project_id, len(ids), job)
    return Overloaded(f"{refused.message}. Handed to background predict job {job} ({'new' if created else 'joined'}"
                      f"): its predictions of these {len(ids)} tasks appear in the Data Manager as it runs "
                      f"(GET /jobs?project={project_id})", retry_after_s=refused.retry_after_s)


def coverage_warnings(runtime: Runtime, project_id: int | None, model_version: str) -> list[str]:
    """The project's labels that `model_version` cannot pre-label, as one message (none when all are covered or
    coverage was checked for another version)."""
    stored = runtime.context.projects.get(project_id)
    coverage = Coverage.from_dict(stored.coverage if stored else None)
    if coverage is None or coverage.model_version != model_version or not coverage.missing:
        return []
    return [coverage.message()]


def _video_context(context, ontology: Ontology) -> bool:
    """Whether an interactive request is about video boxes (carried through the next frames) rather than an image
    smart tool: the config has video controls and no image ones, or the context holds `videorectangle` regions."""
    videos = [c for c in ontology.controls if c.is_video]
    return bool(videos) and (len(videos) == len(ontology.controls) or any(
        seed_regions({}, context, control) for control in videos))


def _work(tasks: list[dict], ontology: Ontology, params: PredictParams, context=None) -> tuple[int, int]:
    """(frames the request will carry annotators' boxes through: `propagate_max_frames` per video with boxes left
    open, images the pipeline will run on: one per image, `video_max_frames` per video without such boxes)."""
    _, wanted = image_urls(tasks, ontology.with_controls(lambda c: not c.is_video))
    carry, images = 0, len(wanted)
    for task in tasks:
        for control in (c for c in ontology.controls if c.is_video):
            if params.carry_video_boxes and any(carried(r) for r in seed_regions(task, context, control)):
                carry += params.propagate_max_frames
            else:
                images += params.video_max_frames
    return carry, images


def _ontology(runtime: Runtime, project_id: int | None, label_config, params: PredictParams) -> Ontology:
    """The request's label config, else the one `/setup` stored for the project."""
    if not label_config:
        stored = runtime.context.projects.get(project_id)
        label_config = stored.label_config if stored else None
    if not label_config:
        raise BadRequest("'label_config' is missing and no /setup was received for this project")
    return parse_label_config(label_config, params)


def handle_interactive(runtime: Runtime, tasks: list[dict], ontology: Ontology, params: PredictParams,
                       context: dict) -> dict:
    """Smart-tool request: SAM on the first task's image → one brush (or polygon, or tightened box) region."""
    task = tasks[0]
    regions = context.get("result") if isinstance(context, dict) else None
    first = regions[0] if isinstance(regions, list) and regions and isinstance(regions[0], dict) else {}
    image_key = next((c.image_key for c in ontology.controls if c.to_name == first.get("to_name")),
                     ontology.image_keys[0])
    data = task.get("data")
    if not isinstance(data, dict):
        raise BadRequest("interactive request: the task has no 'data' object")
    parse_context(context, (1, 1))  # a malformed context is refused before any download
    url = data.get(image_key)
    pipeline = runtime.context.selector.interactive(context, str(url))
    version = pipeline.model_version
    with runtime.interactive_admission.admit("interactive", 1):  # smart tools have slots of their own
        try:
            image = runtime.context.images.load(url, optional_id(task.get("id")))
        except TaskError as exc:
            return {"results": [{"task": task.get("id"), "error": exc.message, "model_version": version}]
                    + [task_prediction([], version) for _ in tasks[1:]]}
        (dets,) = runtime.context.selector.run(pipeline, [image.pixels], ontology, params, INTERACTIVE)
    controls = ontology.controls_for(image_key)
    chosen = next(([c for c in controls if c.tag == tag] for tag in INTERACTIVE_CONTROL_ORDER
                   if any(c.tag == tag for c in controls)), [])
    results = detections_to_results(dets.resized_to(image.original_size), chosen, params.polygon_tolerance)
    runtime.metrics.regions.labels("interactive").inc(len(results))
    return {"results": [task_prediction(results, version)] + [task_prediction([], version) for _ in tasks[1:]]}
