"""Training jobs: what a `train` job does for a project, and when annotation events should start one.

Today a project's trainable model is its image classifier (from `Choices`), served by the LIME pipeline;
the version becomes active only if it does at least as well as the active one on the same held-out tasks.
"""

from __future__ import annotations

from backend.core.errors import BadRequest
from backend.core.params import PredictParams
from backend.jobs.store import StateStore
from backend.labelstudio.client import LabelStudioConnection
from backend.labelstudio.config import parse_label_config
from backend.labelstudio.images import ImageFetcher
from backend.registry.versions import Registry
from backend.training.classifier import train_project_classifier

ANNOTATION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATION_DELETED", "ANNOTATIONS_DELETED")
CLASSIFIER = "classifier"


def should_train(store: StateStore, project_id: int, params: PredictParams, since: float | None,
                 reported_total: int | None) -> bool:
    """Annotation-event trigger: at least `train_min_annotations` annotations in the project (Label Studio's
    own count when the event carries it, else the events seen) and `train_min_new` events since the last job."""
    total = max(reported_total or 0, store.count_events(project_id, ("ANNOTATION_CREATED",)))
    new = store.count_events(project_id, ANNOTATION_ACTIONS, since)
    return total >= params.train_min_annotations and new >= params.train_min_new


def run_training_job(job: dict, store: StateStore, registry: Registry, connection: LabelStudioConnection,
                     fetcher: ImageFetcher) -> dict:
    """Train a new classifier version for the job's project from the Label Studio API; activate it if it
    is at least as accurate as the active version on the same held-out tasks."""
    project_id = int(job["project_id"])
    project = store.project(project_id)
    if not project or not project.get("label_config"):
        raise BadRequest(f"project {project_id} was never set up (/setup): its label config is unknown")
    ontology = parse_label_config(project["label_config"])
    choices = [c for c in ontology.controls if c.tag == "Choices"]
    if not choices:
        raise BadRequest(f"project {project_id} has no <Choices> control: only image classifiers are trainable "
                         "so far (detector retraining from boxes is not implemented yet)")
    active = registry.active(project_id, CLASSIFIER)
    staging = registry.staging_dir(project_id, CLASSIFIER)
    metrics = train_project_classifier(connection, fetcher, project_id, staging, choices[0].image_key,
                                       choices[0].name, baseline=active.path if active else None)
    version = registry.commit(staging, project_id, CLASSIFIER, metrics)
    baseline = metrics.get("baseline_accuracy")
    activated = baseline is None or metrics["accuracy"] >= baseline
    if activated:
        registry.activate(project_id, CLASSIFIER, version.name)
    return {"version": version.label, "activated": activated, "accuracy": metrics["accuracy"],
            "baseline_accuracy": baseline, "n_train": metrics["n_train"], "train_s": metrics["train_s"]}
