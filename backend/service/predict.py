"""`POST /predict`: tasks → images → pipeline → Label Studio predictions, one entry per task in order.

Images download in parallel; the pipeline runs on them in chunks of `PIPELINE_CHUNK` as they arrive, so
compute overlaps with the downloads still in flight. Admission control (`backend.service.admission`) refuses
work the worker cannot finish in time with a 503.

A task whose image cannot be used gets an entry without `result` but with an `error` message
(Label Studio logs it and stores the other tasks' predictions); the request still succeeds.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, as_completed
from dataclasses import dataclass

from backend.core.detections import Detections
from backend.core.device import INTERACTIVE
from backend.core.errors import BadRequest, TaskError
from backend.core.ontology import Ontology
from backend.core.params import PredictParams
from backend.labelstudio.config import parse_label_config
from backend.labelstudio.decode import LoadedImage
from backend.labelstudio.results import detections_to_results, task_prediction
from backend.pipelines.interactive import INTERACTIVE_CONTROL_ORDER, parse_context
from backend.service.inputs import optional_id, parse_project_id
from backend.service.runtime import Runtime

log = logging.getLogger(__name__)
PIPELINE_CHUNK = 8  # images per pipeline call: the first ones are computed while later ones still download


@dataclass
class _ImageJob:
    task_index: int
    image_key: str
    future: Future


def handle_predict(runtime: Runtime, body: dict) -> dict:
    tasks = body.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise BadRequest("'tasks' must be a non-empty list of Label Studio tasks")
    if not all(isinstance(t, dict) for t in tasks):
        raise BadRequest("every entry of 'tasks' must be a JSON object")
    project_id = parse_project_id(body.get("project"))
    params = runtime.project_params(project_id).predict
    ontology = _ontology(runtime, project_id, body.get("label_config"), params)
    context = body["params"].get("context") if isinstance(body.get("params"), dict) else None
    if context:
        return handle_interactive(runtime, tasks, ontology, params, context)
    pipeline = runtime.selector.for_project(project_id, params, ontology)
    errors, wanted = _image_urls(tasks, ontology)
    with runtime.admission.admit(pipeline.name, len(wanted)):
        jobs = [_ImageJob(i, key, runtime.images.submit(url, optional_id(tasks[i].get("id"))))
                for i, key, url in wanted]
        pipeline, computed = _compute(runtime, pipeline, jobs, errors, ontology, params)
    per_task: dict[int, list[dict]] = {}
    for i, dets in computed:
        job = jobs[i]
        if job.task_index not in errors:
            per_task.setdefault(job.task_index, []).extend(
                detections_to_results(dets, ontology.controls_for(job.image_key), params.polygon_tolerance))
    results = []
    for i, task in enumerate(tasks):
        outcome = "error" if i in errors else "ok"
        runtime.metrics.tasks.labels(pipeline.name, outcome).inc()
        if i in errors:
            log.warning("task %s: %s", task.get("id"), errors[i])
            results.append({"task": task.get("id"), "error": errors[i], "model_version": pipeline.model_version})
        else:
            runtime.metrics.regions.labels(pipeline.name).inc(len(per_task.get(i, [])))
            results.append(task_prediction(per_task.get(i, []), pipeline.model_version))
    return {"results": results, "model_version": pipeline.model_version}


def _ontology(runtime: Runtime, project_id: int | None, label_config, params: PredictParams) -> Ontology:
    """The request's label config, else the one `/setup` stored for the project."""
    if not label_config:
        stored = runtime.projects.get(project_id)
        label_config = stored.label_config if stored else None
    if not label_config:
        raise BadRequest("'label_config' is missing and no /setup was received for this project")
    return parse_label_config(label_config, params)


def _image_urls(tasks: list[dict], ontology: Ontology) -> tuple[dict[int, str], list[tuple[int, str, object]]]:
    """({task index: error} for tasks without usable data, [(task index, image key, url)] to download)."""
    errors: dict[int, str] = {}
    wanted: list[tuple[int, str, object]] = []
    for i, task in enumerate(tasks):
        data = task.get("data")
        if not isinstance(data, dict):
            errors[i] = "task has no 'data' object"
            continue
        for key in ontology.image_keys:
            url = data.get(key)
            if not url:
                errors[i] = f"task has no image under data.{key} (the label config's <Image value=\"${key}\">)"
                break
            wanted.append((i, key, url))
    return errors, wanted


def _compute(runtime: Runtime, pipeline, jobs: list[_ImageJob], errors: dict[int, str], ontology: Ontology,
             params: PredictParams) -> tuple[object, list[tuple[int, Detections]]]:
    """Run the pipeline on the images as they arrive, `PIPELINE_CHUNK` at a time; returns the pipeline that ran
    (auto mode may hand over) and (index into jobs, Detections in original pixels) in job order. Download
    failures are added to `errors`."""
    ready: list[tuple[int, LoadedImage]] = []
    computed: list[tuple[int, Detections]] = []
    position = {job.future: i for i, job in enumerate(jobs)}
    for done, future in enumerate(as_completed(position), start=1):
        try:
            ready.append((position[future], future.result()))
        except TaskError as exc:
            errors.setdefault(jobs[position[future]].task_index, exc.message)
        # compute on the images that have arrived while the others are still downloading
        if ready and (len(ready) >= PIPELINE_CHUNK or done == len(jobs)):
            ready = [(i, image) for i, image in ready if jobs[i].task_index not in errors]
            if ready:
                pipeline, dets = runtime.selector.run(pipeline, [image.pixels for _, image in ready], ontology,
                                                      params)
                computed.extend((i, d.resized_to(image.original_size)) for (i, image), d in zip(ready, dets))
            ready = []
    computed.sort(key=lambda item: item[0])
    return pipeline, computed


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
    pipeline = runtime.selector.interactive(context, str(url))
    version = pipeline.model_version
    try:
        image = runtime.images.load(url, optional_id(task.get("id")))
    except TaskError as exc:
        return {"results": [{"task": task.get("id"), "error": exc.message, "model_version": version}]
                + [task_prediction([], version) for _ in tasks[1:]]}
    _, (dets,) = runtime.selector.run(pipeline, [image.pixels], ontology, params, INTERACTIVE)
    controls = ontology.controls_for(image_key)
    chosen = next(([c for c in controls if c.tag == tag] for tag in INTERACTIVE_CONTROL_ORDER
                   if any(c.tag == tag for c in controls)), [])
    results = detections_to_results(dets.resized_to(image.original_size), chosen, params.polygon_tolerance)
    runtime.metrics.regions.labels("interactive").inc(len(results))
    return {"results": [task_prediction(results, version)] + [task_prediction([], version) for _ in tasks[1:]]}
