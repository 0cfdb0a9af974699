"""Detector retraining against a real Label Studio: annotations created through the API → ANNOTATION_CREATED
webhooks → the trigger enqueues a job → the backend trains a small detector on CPU → the version becomes
active → the next predictions carry its model_version. Then the backend is killed with SIGKILL mid-training:
after a restart the previous version is still served, no partial version exists, and the job runs again."""

import io
import json
import time

import numpy as np
import pytest
import requests
from label_studio_sdk.client import LabelStudio
from PIL import Image

from tests.e2e.servers import BackendServer

pytestmark = pytest.mark.e2e
CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image"><Label value="blob"/></RectangleLabels>
</View>"""
SIZE = (128, 96)  # width, height
EXTRA = {"train_epochs": 30, "train_image_size": 128, "train_min_annotations": 8, "train_min_new": 8,
         "box_threshold": 0.05}


def _image(rng) -> tuple[bytes, list[float]]:
    """A PNG with one bright blob on dark noise and the blob's box in Label Studio percent (x, y, w, h)."""
    w, h = SIZE
    image = rng.integers(0, 50, (h, w, 3), dtype=np.uint8)
    x, y = int(rng.integers(5, 80)), int(rng.integers(5, 60))
    image[y:y + 30, x:x + 40] = (230, 200, 40)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue(), [x / w * 100, y / h * 100, 40 / w * 100, 30 / h * 100]


@pytest.fixture(scope="module")
def detector_backend(label_studio, tmp_path_factory):
    server = BackendServer(tmp_path_factory.mktemp("detector-backend"), label_studio.url, label_studio.token)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def project(label_studio, detector_backend):
    ls = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
    project = ls.projects.create(title="e2e detector", label_config=CONFIG)
    ml = ls.ml.create(project=project.id, url=detector_backend.url, title="autolabel", extra_params=EXTRA)
    rng = np.random.default_rng(3)
    files, boxes = {}, {}
    for i in range(10):
        png, box = _image(rng)
        files[f"blob{i}"] = (f"blob{i}.png", png, "image/png")
        boxes[f"blob{i}.png"] = box
    requests.post(f"{label_studio.url}/api/projects/{project.id}/import", files=files,
                  headers={"Authorization": f"Token {label_studio.token}"}, timeout=60).raise_for_status()
    tasks = list(ls.tasks.list(project=project.id))
    return ls, project, ml, tasks, boxes


def _jobs(backend, project_id):
    return requests.get(f"{backend.url}/jobs", params={"project": project_id}, timeout=5).json()["jobs"]


def _wait_idle(backend, project_id, timeout_s=300):
    """Wait until the project has jobs and none is pending or running; returns them (newest first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        jobs = _jobs(backend, project_id)
        if jobs and not any(j["status"] in ("pending", "running") for j in jobs):
            return jobs
        time.sleep(0.5)
    pytest.fail(f"jobs did not finish: {_jobs(backend, project_id)}\n{backend.log.read_text()[-3000:]}")


def _versions(backend, project_id):
    return requests.get(f"{backend.url}/versions", params={"project": project_id}, timeout=5).json()


def _served_version(ls, project_id, task_id):
    ls.actions.create(id="retrieve_tasks_predictions", project=project_id,  # the one task: within /predict's deadline
                      selected_items={"all": False, "included": [task_id]})  # whatever the machine's load
    predictions = ls.predictions.list(task=task_id)
    assert predictions, "Label Studio stored no prediction"
    return predictions[-1]


def test_annotations_trigger_training_and_the_new_detector_serves(project, detector_backend):
    ls, project, _, tasks, boxes = project
    for task in tasks:
        x, y, w, h = boxes[task.data["image"].rsplit("/", 1)[-1].split("-", 1)[-1]]
        ls.annotations.create(id=task.id, result=[{
            "from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": SIZE[0],
            "original_height": SIZE[1], "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0,
                                                 "rectanglelabels": ["blob"]}}])
    jobs = _wait_idle(detector_backend, project.id)
    training = [j for j in jobs if j["kind"] == "train"]  # importing the tasks also queued a predict job
    assert training and training[-1]["trigger"] == "ANNOTATION_CREATED"  # the annotation trigger, no button pressed
    # before any detector is trained, the Connect's and the import's predict jobs have no model for "blob" and say so
    early = [j for j in jobs if j["kind"] == "predict" and j["trigger"] in ("SETUP", "TASKS_CREATED")]
    assert early and all(j["status"] == "failed" and '"blob"' in j["message"] for j in early), early
    later = [j for j in jobs if j not in early]
    assert all(j["status"] == "done" for j in later), json.dumps(later, indent=1)
    versions = _versions(detector_backend, project.id)
    active = versions["active"]["detector"]
    assert active is not None
    trained = next(v for v in versions["trained"] if v["kind"] == "detector" and v["version"] == active)
    metrics = trained["metrics"]  # the tasks its training read: trained on, or held out (not those annotated since)
    split = metrics["n_eval_images"] - metrics["n_fresh_eval_images"] if metrics["evaluated_on"] == "held-out" else 0
    assert metrics["n_train_images"] + split >= EXTRA["train_min_annotations"], metrics

    prediction = _served_version(ls, project.id, tasks[0].id)
    assert prediction.model_version == f"project{project.id}-detector-{active}"
    assert all(r["value"]["rectanglelabels"] == ["blob"] for r in prediction.result)


def test_sigkill_during_training_keeps_the_served_version_and_reruns_the_job(project, detector_backend,
                                                                             label_studio):
    ls, project, ml, tasks, _ = project
    before = _versions(detector_backend, project.id)
    active, names = before["active"]["detector"], [v["version"] for v in before["trained"]]
    assert active is not None, "runs after the training test"
    # a long run this time (what an admin does by raising train_epochs in the model's extra params)
    setup = {"project": str(project.id), "schema": CONFIG,
             "extra_params": {**EXTRA, "train_epochs": 10000, "train_time_budget_s": 20}}
    assert requests.post(f"{detector_backend.url}/setup", json=setup, timeout=30).status_code == 200
    ls.ml.train(id=ml.id)  # "Start training" → START_TRAINING webhook
    versions_dir = detector_backend.model_dir / "projects" / str(project.id) / "detector" / "versions"
    deadline = time.monotonic() + 60
    while not list(versions_dir.glob(".staging-*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    (job,) = [j for j in _jobs(detector_backend, project.id) if j["status"] == "running" and j["kind"] == "train"]
    assert list(versions_dir.glob(".staging-*")), "training never started"
    time.sleep(2)  # well inside the 20 s training run
    detector_backend.kill()

    restarted = BackendServer(detector_backend.model_dir.parent, label_studio.url, label_studio.token,
                              port=detector_backend.port)
    detector_backend.process = restarted.process  # the module fixture stops whichever process runs
    # the previous version is still active and served while the job runs again
    assert _versions(restarted, project.id)["active"]["detector"] == active
    prediction = _served_version(ls, project.id, tasks[0].id)
    assert prediction.model_version == f"project{project.id}-detector-{active}"
    jobs = _wait_idle(restarted, project.id)
    rerun = next(j for j in jobs if j["id"] == job["id"])
    assert rerun["status"] == "done" and rerun["attempts"] == 2, rerun
    after = [v["version"] for v in _versions(restarted, project.id)["trained"]]
    assert after[:len(names)] == names and len(after) == len(names) + 1  # one complete new version, no partial
    assert not list(versions_dir.glob(".staging-*"))
