"""Detector retraining: box examples from Label Studio regions, and a whole `train` job against a loopback
peer that answers the Label Studio API calls the job makes (export, images): version, activation rule,
serving with the zero-shot fallback, corrupt annotations. (The real Label Studio run is in tests/e2e.)"""

import json
import threading
import time

import numpy as np
import pytest

from backend.core.errors import BadRequest
from backend.jobs.runner import JobRunner
from backend.labelstudio.config import parse_label_config
from backend.service.app import create_app
from backend.training.dataset import MIN_FOR_HOLD_OUT, box_examples, is_held_out
from backend.models.detector_io import load_detector
from tests.synthetic_project import CONFIG, regions_for, annotated_task, serve_project

@pytest.mark.parametrize("results,boxes,labels", [
    (regions_for("RectangleLabels", (10, 20, 50, 40)), [[10, 20, 50, 40]], ["blob"]),
    (regions_for("BrushLabels", (10, 20, 50, 40)), [[10, 20, 50, 40]], ["blob"]),
    (regions_for("PolygonLabels", (10, 20, 50, 40)), [[10, 20, 50, 40]], ["blob"]),
    (regions_for("RectangleLabels", (10, 20, 50, 40), label="dog"), [], []),  # label no longer in the config
    ([{"from_name": "other", "type": "choices", "value": {"choices": ["x"]}}], [], []),  # not a box control
    ([], [], []),  # an image reviewed as empty: a negative example
])
def test_box_examples(results, boxes, labels):
    controls = list(parse_label_config(CONFIG).controls)
    (example,) = box_examples([annotated_task(1, results)], controls)
    np.testing.assert_allclose(example.boxes, np.array(boxes, np.float32).reshape(-1, 4), atol=0.51)
    assert list(example.labels) == labels and example.url == "/data/upload/1.png"


def test_box_examples_skip_cancelled_and_name_corrupt_regions():
    controls = list(parse_label_config(CONFIG).controls)
    assert box_examples([annotated_task(1, regions_for("RectangleLabels", (1, 1, 9, 9)), was_cancelled=True)], controls) == []
    corrupt = regions_for("RectangleLabels", (1, 1, 9, 9))
    corrupt[0]["value"]["width"] = "wide"
    with pytest.raises(BadRequest, match="task 7, annotation 107: region 0 .* malformed"):
        box_examples([annotated_task(7, corrupt)], controls)


@pytest.fixture()
def project(peer, make_settings):
    """Project 9 set up on a backend whose Label Studio is the loopback peer: 12 annotated images."""
    tasks = serve_project(peer, 12, seed=0)
    app = create_app(make_settings(run_jobs=False, label_studio_url=peer.url, label_studio_api_key="secret"))
    client = app.test_client()
    # train_seconds_per_image 0: the 900-s budget, so the 25 epochs end the run, not a loaded machine's clock (15 epochs
    # left the detector finding nothing on the held-out tasks in 1 run of 6); it holds two head phases, so 25 epochs of
    # the head are followed by 25 that fine-tune the backbone's last blocks (`backend.training.recipe.training_phases`)
    extra = {"train_epochs": 25, "train_image_size": 128, "num_samples": 16, "train_seconds_per_image": 0}
    assert client.post("/setup", json={"project": "9", "schema": CONFIG, "extra_params": extra}).status_code == 200
    (connect_job,) = client.get("/jobs?project=9").get_json()["jobs"]  # the Connect's predict job: not run here
    client.post(f"/jobs/{connect_job['id']}/cancel")

    def export(tasks):
        peer.routes["/api/projects/9/export?exportType=JSON"] = (200, json.dumps(tasks).encode(), {})

    export(tasks)
    runtime = app.extensions["runtime"]
    return client, runtime, tasks, export


def _train(client, runtime):
    """Start training and run the train job; returns its record (an activated version also enqueues a predict job
    for the unlabelled tasks: checked in the first test below)."""
    job_id = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 9}}).get_json()["job"]
    assert JobRunner(runtime.context.jobs, {"train": runtime.context.run_job}).run_once(job_id)
    return next(j for j in client.get("/jobs?project=9").get_json()["jobs"] if j["id"] == job_id)


def test_train_job_makes_an_active_detector_that_serves_with_a_fallback(project):
    client, runtime, tasks, export = project
    job = _train(client, runtime)
    assert job["status"] == "done", job["message"]
    summary = job["result"]["detector"]
    assert summary["activated"] and summary["version"] == "project9-detector-v0001", summary
    predict = [j for j in client.get("/jobs?project=9").get_json()["jobs"] if j["kind"] == "predict"]
    assert [(j["trigger"], j["status"]) for j in predict] == [("VERSION_ACTIVATED", "pending"), ("SETUP", "cancelled")]
    versions = client.get("/versions?project=9").get_json()
    (trained,) = versions["trained"]
    assert versions["active"] == {"detector": "v0001", "classifier": None}
    metrics = trained["metrics"]
    assert metrics["classes"] == ["blob"] and metrics["n_train_images"] + metrics["n_eval_images"] == 12
    assert metrics["evaluated_on"] == "held-out" and 0.0 <= metrics["ap50"] <= 1.0
    assert set(metrics["per_class"]) == {"blob"} and metrics["n_train_boxes"] == metrics["n_train_images"]
    assert metrics["fine_tune"]["from_block"] == 11 and metrics["fine_tune"]["epochs"] == 25 == metrics["epochs"] - 25
    assert metrics["time_budget_s"] == 300  # two phases of 150 s at most: the rest of the 900 s is not used

    # "cat" was never annotated: the zero-shot pipeline (LIME here, offline) covers it
    body = {"project": "9.123", "label_config": CONFIG, "tasks": [tasks[0]], "params": {}}
    response = client.post("/predict", json=body).get_json()
    assert response["model_version"] == "project9-detector-v0001+lime-efficientnet-lite0"
    (prediction,) = response["results"]
    assert all(r["value"][r["type"]][0] in ("blob", "cat") for r in prediction["result"])

    assert metrics["effort"]["draw_s"] == 7.0 and "extreme clicking" in metrics["effort"]["model"]

    # a second version, asked to fuse two views at inference, is compared with the first on the same tasks, its cuts
    # fitted for annotators who draw a box in 25.5 s
    extra = {"train_epochs": 25, "train_image_size": 128, "num_samples": 16, "train_tta_views": 2,
             "auto_predict": False, "train_seconds_per_image": 0, "train_draw_seconds": 25.5}
    assert client.post("/setup", json={"project": "9", "schema": CONFIG, "extra_params": extra}).status_code == 200
    job = _train(client, runtime)
    second = job["result"]["detector"]
    assert second["version"] == "project9-detector-v0002" and second["baseline_ap50"] is not None
    model, _ = load_detector(runtime.context.registry.version(9, "detector", "v0002").path)
    assert model.spec.tta_views == 2
    effort = next(v for v in client.get("/versions?project=9").get_json()["trained"] if v["version"] == "v0002")[
        "metrics"]["effort"]
    assert effort["draw_s"] == 25.5 and effort["manual_s"] == pytest.approx(25.5 * metrics["n_eval_boxes"], abs=0.1)
    active = client.get("/versions?project=9").get_json()["active"]["detector"]
    assert active == ("v0002" if second["activated"] else "v0001")
    # rollback is one call
    assert client.post("/versions/activate", json={"project": 9, "version": "v0001"}).get_json()["active"] == "v0001"


def test_corrupt_annotation_fails_the_job_with_a_clear_message_and_keeps_serving(project):
    client, runtime, tasks, export = project
    assert _train(client, runtime)["status"] == "done"
    broken = json.loads(json.dumps(tasks))
    broken[3]["annotations"][0]["result"][0]["value"]["x"] = None
    export(broken)
    job = _train(client, runtime)
    assert job["status"] == "failed" and "task 4, annotation 104" in job["message"]
    assert not list(runtime.context.registry.root.glob("projects/9/*/versions/.staging-*"))  # no half-made version left
    assert client.get("/versions?project=9").get_json()["active"]["detector"] == "v0001"
    body = {"project": "9", "label_config": CONFIG, "tasks": [tasks[0]]}
    assert client.post("/predict", json=body).get_json()["results"][0]["model_version"].startswith(
        "project9-detector-v0001")


def test_a_project_that_asks_for_its_measured_drawing_time_gets_cuts_fitted_for_it(project, peer):
    """`train_draw_seconds` 0: the lead times of the exported annotations against the pre-labels they started from
    (read from `/api/predictions`) set the version's cost model; the default's 7 s while they cannot be read."""
    client, runtime, tasks, export = project
    extra = {"train_epochs": 25, "train_image_size": 128, "num_samples": 16, "train_seconds_per_image": 0,
             "auto_predict": False, "train_draw_seconds": 0}
    assert client.post("/setup", json={"project": "9", "schema": CONFIG, "extra_params": extra}).status_code == 200
    timed, predictions = json.loads(json.dumps(tasks)), []
    for task in timed:  # every other task started from a pre-label the annotator accepted (verify 1.6 s); the others
        annotation = task["annotations"][0]  # drew their one box at 25.5 s; 6 s a task besides its boxes
        if task["id"] % 2:
            predictions.append({"id": 500 + task["id"], "task": task["id"], "model_version": "zero-shot",
                                "result": annotation["result"], "score": 0.9})
            task["predictions"] = [500 + task["id"]]  # as Label Studio exports them: ids
            annotation["lead_time"] = 6.0 + 1.6
        else:
            task["predictions"], annotation["lead_time"] = [], 6.0 + 25.5
    export(timed)

    job = _train(client, runtime)  # the predictions cannot be read yet (404): 7 s
    assert job["status"] == "done", job["message"]
    drawing = job["result"]["detector"]["drawing_time"]
    assert drawing["applied_s"] == 7.0 and drawing["applied_from"] == "default" and "404" in drawing["reason"]
    assert "cuts fitted for 7 s a box until the drawing time is measured" in job["message"]

    peer.routes["/api/predictions?project=9"] = (200, json.dumps(predictions).encode(), {})
    job = _train(client, runtime)
    drawing = job["result"]["detector"]["drawing_time"]
    assert drawing["applied_from"] == "measured" and drawing["applied_s"] == 25.5, drawing
    assert (drawing["n_annotations"], drawing["per_task_s"]) == (12, 6.0)
    assert "cuts fitted for 25.5 s a box, measured from 12 annotations" in job["message"]
    metrics = {v["version"]: v["metrics"] for v in client.get("/versions?project=9").get_json()["trained"]}
    assert (metrics["v0001"]["effort"]["draw_s"], metrics["v0002"]["effort"]["draw_s"]) == (7.0, 25.5)
    assert metrics["v0002"]["effort"]["manual_s"] == pytest.approx(25.5 * metrics["v0002"]["n_eval_boxes"], abs=0.1)


def _export_grows_after_first_read(peer, path, later):
    """Serve `later` as the export once the job has read the first one and started loading its images
    (annotations submitted while it trains)."""
    def watch():
        while not any(p == "/data/upload/1.png" for p, _ in list(peer.requests)):
            time.sleep(0.005)
        peer.routes[path] = (200, json.dumps(later).encode(), {})
    threading.Thread(target=watch, daemon=True).start()


@pytest.mark.parametrize("annotated,fresh,evaluated_on", [
    (12, 4, "held-out"),  # the held-out split and the 4 annotated while it trained
    (8, 4, "held-out"),  # too few for a split: evaluated on the 4 fresh ones alone, not on its training tasks
    (8, 0, "training"),
])
def test_images_annotated_while_a_version_trains_are_evaluated_with_the_held_out_ones(peer, make_settings, annotated,
                                                                                       fresh, evaluated_on):
    tasks = serve_project(peer, annotated + fresh, seed=1)
    app = create_app(make_settings(run_jobs=False, label_studio_url=peer.url, label_studio_api_key="secret"))
    client = app.test_client()
    extra = {"train_epochs": 3, "train_image_size": 128, "num_samples": 16, "train_seconds_per_image": 0,
             "auto_predict": False}
    assert client.post("/setup", json={"project": "9", "schema": CONFIG, "extra_params": extra}).status_code == 200
    path = "/api/projects/9/export?exportType=JSON"
    peer.routes[path] = (200, json.dumps(tasks[:annotated]).encode(), {})
    _export_grows_after_first_read(peer, path, tasks)
    job = _train(client, app.extensions["runtime"])
    assert job["status"] == "done", job["message"]
    (trained,) = client.get("/versions?project=9").get_json()["trained"]
    metrics = trained["metrics"]
    assert metrics["n_fresh_eval_images"] == fresh and metrics["evaluated_on"] == evaluated_on
    held_out = sum(is_held_out(t["id"]) for t in tasks[:annotated]) if annotated >= MIN_FOR_HOLD_OUT else 0
    expected = annotated if evaluated_on == "training" else held_out + fresh
    assert metrics["n_eval_images"] == expected
    assert metrics["n_train_images"] == (annotated if annotated < MIN_FOR_HOLD_OUT else annotated - held_out)
