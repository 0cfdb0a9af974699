"""Training jobs: what a `train` job does for a project, and when annotation events should start one.

A project with RectangleLabels / BrushLabels / PolygonLabels gets a specialised box detector (served by the
`trained` pipeline); one with Choices gets an image classifier (served by the LIME pipeline); a project
with both gets both. A new version becomes active only if it beats what serves now on the same held-out tasks
(`is_better`): for a detector, each label is served by the detector or the zero-shot pipeline, whichever is better on
them (`backend.training.sources`), so a version never serves worse than the zero-shot pipeline it replaces. The
held-out tasks include those annotated while the version trained (`annotated_since`): neither it nor the active
version saw them, and a young project's split alone holds 3-4 tasks.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Callable

from backend.core.cancel import NEVER, StopFlag
from backend.core.errors import BadRequest, NotEnoughData
from backend.core.ontology import BOX_CONTROLS, Ontology
from backend.core.params import ProjectParams, TrainParams
from backend.labelstudio.api import annotation_count, export_tasks, recently_annotated_ids, with_predictions
from backend.labelstudio.client import LabelStudioConnection
from backend.labelstudio.config import parse_label_config
from backend.labelstudio.images import ImageFetcher
from backend.registry.versions import CLASSIFIER, DETECTOR, Registry
from backend.review.drawing import MEASURED, drawing_time
from backend.review.export import read_export
from backend.store.events import EventLog
from backend.store.projects import ProjectStore
from backend.training.classifier import train_project_classifier
from backend.training.dataset import LabeledImage, image_examples
from backend.training.comparison import ServedCut, ZeroShot
from backend.training.project_detector import FRESH_MAX, train_project_detector
from backend.training.sources import serves_better
from backend.training.video_dataset import video_examples

log = logging.getLogger(__name__)

ANNOTATION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATION_DELETED",
                      "ANNOTATIONS_DELETED")


def should_train(events: EventLog, project_id: int, params: TrainParams, since: float | None) -> bool:
    """Annotation-event trigger: `train_min_new` annotation events since the last job. The job itself then reads
    the project's annotation count from the Label Studio API (never from the event body) and trains only from
    `train_min_annotations` annotations on."""
    return events.count(project_id, ANNOTATION_ACTIONS, since) >= params.min_new


def is_better(kind: str, metrics: dict) -> bool:
    """Whether a new version beats what serves now, both scored on the very same evaluation tasks (the metrics
    hold the active version's scores as `baseline_*`). Detector: the (AP50, AP) it would serve with its per-label
    sources against what serves now, the zero-shot pipeline included (`serves_better`; metrics written before
    per-label sources: its own (AP50, AP) against the active version's, nothing active = better); classifier:
    accuracy at least as high (ties keep the newer; nothing active = better)."""
    if kind == DETECTOR:
        if "served_ap50" in metrics:
            return serves_better(metrics)
        if metrics.get("baseline_ap50") is None:
            return True
        return (metrics["ap50"], metrics["ap"]) > (metrics["baseline_ap50"], metrics["baseline_ap"])
    if kind == CLASSIFIER:
        return metrics.get("baseline_accuracy") is None or metrics["accuracy"] >= metrics["baseline_accuracy"]
    raise ValueError(f"unknown model kind {kind!r}")


def _image_regions(ontology: Ontology) -> Ontology | None:
    """The ontology's image box controls as rectangles: what the zero-shot pipeline is compared on, by boxes (no
    masks computed); None for a video-only config."""
    controls = tuple(replace(c, tag="RectangleLabels") for c in ontology.controls if c.tag in BOX_CONTROLS)
    return replace(ontology, controls=controls) if controls else None


def detector_examples(tasks: list[dict], controls: list, fetcher: ImageFetcher, params: TrainParams,
                      video_dir: Path, stop: StopFlag = NEVER) -> list[LabeledImage]:
    """Labelled images for the detector: annotated images (rectangles, brush, polygons) and frames of annotated
    videos (`videorectangle` tracks: keyframes and every `train_video_step`-th frame)."""
    images = [c for c in controls if not c.is_video]
    videos = [c for c in controls if c.is_video]
    examples = image_examples(tasks, images, fetcher, stop) if images else []
    if videos:
        examples += video_examples(tasks, videos, fetcher, video_dir, params.video_step, fetcher.limits.max_side, stop)
    return examples


def annotated_since(connection: LabelStudioConnection, project_id: int, seen: set[int], controls: list,
                    fetcher: ImageFetcher, stop: StopFlag = NEVER) -> list[LabeledImage]:
    """The annotated images of tasks not in `seen` (the task ids a version trained or was held out on): annotated
    since its training read the project, read again from the Label Studio API (the `FRESH_MAX` most recently
    completed, found in the Data Manager's listing and exported by id, not with the whole project again; video frames
    are not taken in)."""
    images = [c for c in controls if not c.is_video]
    if not images:
        return []
    ids = set(recently_annotated_ids(connection, project_id, seen, FRESH_MAX))
    tasks = [t for t in export_tasks(connection, project_id, ids=sorted(ids)) if t.get("id") in ids]
    return image_examples(tasks, images, fetcher, stop)


def run_training_job(job: dict, projects: ProjectStore, registry: Registry, connection: LabelStudioConnection,
                     fetcher: ImageFetcher, device: str = "cpu", stop: StopFlag = NEVER,
                     video_dir: Path = Path("videos"), keep_versions: int = 3,
                     zero_shot: Callable[[Ontology, ProjectParams], ZeroShot | None] | None = None,
                     pause: Callable[[], float] | None = None) -> dict:
    """Train new versions for the job's project from the Label Studio API (detector and/or classifier,
    by the project's controls); returns {kind: summary} for the job's status, with "skipped": reason when nothing
    could be trained yet (`backend.jobs.outcome`). An annotation-triggered job first checks the project's annotation
    count against `train_min_annotations` (skipped below it). `zero_shot(ontology, params)`: the zero-shot pipeline
    the detector competes with label by label (None: none can run). `pause`: called between the detector's training
    steps (`backend.jobs.yielding.TrainingYield`)."""
    project_id = int(job["project_id"])
    project = projects.set_up(project_id)
    params = ProjectParams.from_extra(project.extra_params)
    if job.get("trigger") in ANNOTATION_ACTIONS:
        total = annotation_count(connection, project_id)
        if total < params.train.min_annotations:
            return {"skipped": f"project {project_id} has {total} annotations; training starts at "
                               f"{params.train.min_annotations} (train_min_annotations)"}
    ontology = parse_label_config(project.label_config, params.predict)
    box_controls = [c for c in ontology.controls if c.tag in BOX_CONTROLS or c.is_video]
    choices = [c for c in ontology.controls if c.tag == "Choices"]
    if not box_controls and not choices:
        raise BadRequest(f"project {project_id} has nothing trainable: a detector needs RectangleLabels, "
                         "BrushLabels, PolygonLabels or VideoRectangle, a classifier needs Choices")
    tasks = export_tasks(connection, project_id)  # one export for every kind trained
    work, drawing = {}, None
    if box_controls:
        drawing = measured_drawing(connection, project_id, tasks, ontology, params.train.draw_seconds)
        train_params = replace(params.train, draw_seconds=drawing["applied_s"]) if drawing else params.train
        work[DETECTOR] = lambda staging, baseline: train_project_detector(
            detector_examples(tasks, box_controls, fetcher, params.train, video_dir, stop), project_id, train_params,
            staging, device, baseline, stop,
            zero_shot(_image_regions(ontology), params) if zero_shot and _image_regions(ontology) else None,
            ServedCut(params.predict.box_threshold, params.predict.max_regions), pause,
            lambda seen: annotated_since(connection, project_id, seen | {t.get("id") for t in tasks}, box_controls,
                                         fetcher, stop))
    if choices:
        work[CLASSIFIER] = lambda staging, baseline: train_project_classifier(
            tasks, fetcher, project_id, staging, choices[0].image_key, choices[0].name, baseline=baseline, stop=stop)
    result = {}
    for kind, train in work.items():
        try:
            result[kind] = _train_version(registry, project_id, kind, train, keep_versions)
        except NotEnoughData as exc:  # e.g. boxes annotated but no Choices yet: train what can be trained
            result[kind] = {"skipped": exc.message}
    if all("skipped" in r for r in result.values()):  # nothing had usable data yet: the job ends `skipped`
        return {"skipped": "; ".join(r["skipped"] for r in result.values()), **result}
    if drawing and isinstance(result.get(DETECTOR), dict) and "skipped" not in result[DETECTOR]:
        result[DETECTOR]["drawing_time"] = drawing  # what its cuts were fitted for, and the evidence
    return result


def measured_drawing(connection: LabelStudioConnection, project_id: int, tasks: list[dict], ontology: Ontology,
                     configured_s: float) -> dict | None:
    """With `train_draw_seconds` 0 (`MEASURED`): the drawing time the annotated `tasks`' lead times show against the
    pre-labels they started from (`backend.review.drawing.drawing_time`; the predictions are read once,
    `with_predictions`), its `applied_s` the seconds this version's cuts are fitted for (the default's 7 s until the
    measurement is usable). None for any other setting. A failed read of the predictions is logged and the default
    applies (measured without them, every box would count as drawn by hand)."""
    if configured_s != MEASURED:
        return None
    copies = [dict(t) for t in tasks]  # the training reads `tasks` as exported
    try:
        with_predictions(connection, project_id, copies)
    except Exception as exc:  # noqa: BLE001 - the measurement is advisory: the default's cost model applies
        log.warning("project %s: predictions not read for the drawing time: %s", project_id, exc)
        return {**drawing_time([], MEASURED), "reason": f"the project's predictions could not be read: {exc}"}
    return drawing_time(read_export(copies, ontology), MEASURED)


def _train_version(registry: Registry, project_id: int, kind: str, train, keep_versions: int = 3) -> dict:
    """`train(staging dir, active version's dir or None) -> metrics` in a staging directory, committed as the next
    version and activated when `is_better`, older versions pruned (`Registry.prune`: the active one and the newest
    `keep_versions` stay); returns the job's summary for this kind."""
    active = registry.active(project_id, kind)
    with registry.staging(project_id, kind) as staging:
        metrics = train(staging, active.path if active else None)
        better = is_better(kind, metrics)
        version = registry.commit(staging, project_id, kind, metrics)
    if better:
        registry.activate(project_id, kind, version.name)
    registry.prune(project_id, kind, keep_versions)
    keys = ("ap50", "ap", "baseline_ap50", "served_ap50", "baseline_served_ap50", "sources", "n_train_images",
            "warm_start") if kind == DETECTOR else \
        ("accuracy", "baseline_accuracy", "n_train")
    return {"version": version.model_version, "activated": better, "train_s": metrics["train_s"],
            **{key: metrics.get(key) for key in keys}}
