"""Training jobs: what a `train` job does for a project, and when annotation events should start one.

A project with RectangleLabels / BrushLabels / PolygonLabels gets a specialised box detector (served by the
`trained` pipeline); one with Choices gets an image classifier (served by the LIME pipeline); a project
with both gets both. A new version becomes active only if it beats the active one on the same held-out
tasks (detector: AP50, then AP; classifier: accuracy, ties keep the newer).
"""

from __future__ import annotations

from backend.core.cancel import NEVER, StopFlag
from backend.core.errors import BadRequest, NotEnoughData
from backend.core.params import PredictParams
from backend.jobs.store import StateStore
from backend.labelstudio.client import LabelStudioConnection
from backend.labelstudio.config import parse_label_config
from backend.labelstudio.images import ImageFetcher
from backend.registry.versions import Registry
from backend.training.classifier import train_project_classifier
from backend.training.dataset import BOX_CONTROLS, export_tasks
from backend.training.project_detector import train_project_detector

ANNOTATION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATION_DELETED",
                      "ANNOTATIONS_DELETED")
CLASSIFIER = "classifier"
DETECTOR = "detector"
TRAINED_KINDS = (DETECTOR, CLASSIFIER)


def should_train(store: StateStore, project_id: int, params: PredictParams, since: float | None) -> bool:
    """Annotation-event trigger: `train_min_new` annotation events since the last job. The job itself then reads
    the project's annotation count from the Label Studio API (never from the event body) and trains only from
    `train_min_annotations` annotations on."""
    return store.count_events(project_id, ANNOTATION_ACTIONS, since) >= params.train_min_new


def annotation_count(connection: LabelStudioConnection, project_id: int) -> int:
    """Label Studio's own count of the project's annotations (`total_annotations_number`)."""
    response = connection.get(f"/api/projects/{project_id}")
    if response.status_code != 200:
        raise BadRequest(f"Label Studio answered HTTP {response.status_code} for project {project_id}")
    return int(response.json().get("total_annotations_number") or 0)


def run_training_job(job: dict, store: StateStore, registry: Registry, connection: LabelStudioConnection,
                     fetcher: ImageFetcher, device: str = "cpu", stop: StopFlag = NEVER) -> dict:
    """Train new versions for the job's project from the Label Studio API (detector and/or classifier,
    by the project's controls); returns {kind: summary} for the job's status. An annotation-triggered job
    first checks the project's annotation count against `train_min_annotations` (skipped below it)."""
    project_id = int(job["project_id"])
    project = store.project(project_id)
    if not project or not project.get("label_config"):
        raise BadRequest(f"project {project_id} was never set up (/setup): its label config is unknown")
    params = PredictParams().with_overrides(project.get("extra_params"))
    if job.get("trigger") in ANNOTATION_ACTIONS:
        total = annotation_count(connection, project_id)
        if total < params.train_min_annotations:
            return {"skipped": f"project {project_id} has {total} annotations; training starts at "
                               f"{params.train_min_annotations} (train_min_annotations)"}
    ontology = parse_label_config(project["label_config"], params)
    box_controls = [c for c in ontology.controls if c.tag in BOX_CONTROLS]
    choices = [c for c in ontology.controls if c.tag == "Choices"]
    if not box_controls and not choices:
        raise BadRequest(f"project {project_id} has nothing trainable: a detector needs RectangleLabels, "
                         "BrushLabels or PolygonLabels, a classifier needs Choices")
    tasks = export_tasks(connection, project_id)  # one export for every kind trained
    work = {}
    if box_controls:
        work[DETECTOR] = lambda: _train_detector(project_id, tasks, box_controls, params, registry, fetcher, device,
                                                 stop)
    if choices:
        work[CLASSIFIER] = lambda: _train_classifier(project_id, tasks, choices[0], registry, fetcher, stop)
    result = {}
    for kind, train in work.items():
        try:
            result[kind] = train()
        except NotEnoughData as exc:  # e.g. boxes annotated but no Choices yet: train what can be trained
            result[kind] = {"skipped": exc.message}
    if all("skipped" in r for r in result.values()):
        raise NotEnoughData("; ".join(r["skipped"] for r in result.values()))
    return result


def _train_detector(project_id: int, tasks: list[dict], controls, params: PredictParams, registry: Registry,
                    fetcher: ImageFetcher, device: str, stop: StopFlag) -> dict:
    active = registry.active(project_id, DETECTOR)
    with registry.staging(project_id, DETECTOR) as staging:
        metrics = train_project_detector(tasks, fetcher, project_id, controls, params, staging, device,
                                         baseline=active.path if active else None, stop=stop)
        baseline = (metrics["baseline_ap50"], metrics["baseline_ap"]) if "baseline_ap50" in metrics else None
        summary = _register(registry, project_id, DETECTOR, staging, metrics,
                            baseline is None or (metrics["ap50"], metrics["ap"]) > baseline)
    return summary | {"ap50": metrics["ap50"], "ap": metrics["ap"], "baseline_ap50": baseline and baseline[0],
                      "n_train_images": metrics["n_train_images"]}


def _train_classifier(project_id: int, tasks: list[dict], control, registry: Registry,
                      fetcher: ImageFetcher, stop: StopFlag) -> dict:
    active = registry.active(project_id, CLASSIFIER)
    with registry.staging(project_id, CLASSIFIER) as staging:
        metrics = train_project_classifier(tasks, fetcher, project_id, staging, control.image_key, control.name,
                                           baseline=active.path if active else None, stop=stop)
        baseline = metrics.get("baseline_accuracy")
        summary = _register(registry, project_id, CLASSIFIER, staging, metrics,
                            baseline is None or metrics["accuracy"] >= baseline)
    return summary | {"accuracy": metrics["accuracy"], "baseline_accuracy": baseline, "n_train": metrics["n_train"]}


def _register(registry: Registry, project_id: int, kind: str, staging, metrics: dict, better: bool) -> dict:
    """Commit the staged version; make it the active one when `better`."""
    version = registry.commit(staging, project_id, kind, metrics)
    if better:
        registry.activate(project_id, kind, version.name)
    return {"version": version.label, "activated": better, "train_s": metrics["train_s"]}
