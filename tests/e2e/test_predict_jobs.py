"""Background pre-annotation against a real Label Studio: importing tasks pre-labels all of them with no click
(TASKS_CREATED → a predict job → bulk import), with scores; a broken image is reported and the rest predicted;
SIGKILL of the backend mid-job → after a restart the job completes with exactly one prediction per task of that
model version; cancelling stops a job; activating another trained version re-predicts only unlabelled tasks."""

import json
import re
import time
from collections import Counter

import pytest
import requests

from backend.models.detector import DetectorSpec, build_detector
from backend.models.detector_io import save_detector
from backend.registry.versions import DETECTOR, Registry
from tests.e2e.browser import login
from tests.e2e.projects import FAST, Project, finished_jobs, jobs_of, wait_until
from tests.e2e.servers import BackendServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def backend(label_studio, tmp_path_factory):
    server = BackendServer(tmp_path_factory.mktemp("predict-jobs"), label_studio.url, label_studio.token,
                           PIPELINE="lime", PRELOAD_MODELS="false", CALIBRATION_REFRESH_S="0.01")
    yield server
    server.stop()


def test_imported_tasks_are_pre_labelled_without_a_click(label_studio, backend):
    project = Project(label_studio, backend, "auto-predict", FAST)
    project.upload(38)
    project.import_json([{"image": "/data/upload/999/missing.png"}, {"image": "/data/upload/999/gone.png"}])

    def all_reported():
        jobs = jobs_of(backend, project.id)
        failed = [f for job in jobs for f in job["result"].get("failed", [])]
        idle = jobs and all(j["status"] not in ("pending", "running") for j in jobs)
        # a broken task is retried (and reported again) by a later job when the import's second webhook made one
        return idle and len({f["task"] for f in failed}) == 2 and len({p["task"] for p in project.predictions()}) == 38
    wait_until(all_reported, 300, "predictions for the 38 good tasks and 2 reported failures", backend.log)
    job = max(jobs_of(backend, project.id), key=lambda j: j["progress"].get("done", 0))  # Connect's job found no tasks
    predictions = project.predictions()
    per_task = Counter(p["task"] for p in predictions)
    assert len(project.task_ids()) == 40
    assert len(per_task) == 38 and set(per_task.values()) == {1}  # every good task once
    assert all(p["model_version"] == "lime-efficientnet-lite0" and 0.0 <= p["score"] <= 1.0 for p in predictions)
    assert len({round(p["score"], 4) for p in predictions}) > 1  # a score per task, not a constant
    assert all(isinstance(p["cluster"], int) for p in predictions)  # kinds of images, for uncertainty sampling
    settings = requests.get(f"{label_studio.url}/api/projects/{project.id}", headers=project.headers, timeout=30).json()
    assert settings["model_version"] == "lime-efficientnet-lite0" and settings["sampling"] == "Uncertainty sampling"
    failed = {f["task"] for jobs in jobs_of(backend, project.id) for f in jobs["result"].get("failed", [])}
    assert len(failed) == 2 and failed.isdisjoint(per_task)
    reasons = [f["reason"] for jobs in jobs_of(backend, project.id) for f in jobs["result"].get("failed", [])]
    assert all("returned HTTP" in reason for reason in reasons), reasons  # Label Studio answers 500 for them
    assert job["progress"]["done"] >= 1 and "images_per_s" in job["progress"]


def test_sigkill_mid_job_then_the_job_completes_with_one_prediction_per_task(label_studio, backend):
    project = Project(label_studio, backend, "crash-mid-job", {"num_samples": 64, "superpixels": 16})
    project.upload(24, seed=1)  # three chunks of 8: killed after the first or second
    wait_until(lambda: 8 <= len(project.predictions()) < 24, 240, "the first predictions", backend.log)
    backend.kill()
    restarted = BackendServer(backend.model_dir.parent, label_studio.url, label_studio.token, port=backend.port,
                              PIPELINE="lime", PRELOAD_MODELS="false", CALIBRATION_REFRESH_S="0.01")
    backend.process = restarted.process  # the module fixture stops whichever process runs
    jobs = finished_jobs(restarted, project.id, 400)
    # the killed job ran again (attempt 2), or a newer job of the project that was pending took over its tasks
    summary = [(j["status"], j["attempts"], j["message"], j["trigger"]) for j in jobs]
    resumed = any(j["attempts"] >= 2 and j["status"] == "done" for j in jobs)
    superseded = jobs[0]["status"] == "done" and any((j["message"] or "").startswith("interrupted; a newer job")
                                                     for j in jobs)
    assert resumed or superseded, summary
    per_task = Counter((p["task"], p["model_version"]) for p in project.predictions())
    assert len(per_task) == 24 and set(per_task.values()) == {1}, per_task


def test_cancel_stops_a_running_job(label_studio, backend):
    project = Project(label_studio, backend, "cancel", {"num_samples": 64, "superpixels": 16, "auto_predict": False})
    project.upload(24, seed=2)
    response = requests.post(f"{backend.url}/jobs", json={"project": project.id, "kind": "predict"}, timeout=10)
    job_id = response.json()["job"]
    wait_until(lambda: len(project.predictions()) >= 4, 240, "the first predictions", backend.log)
    cancel = requests.post(f"{backend.url}/jobs/{job_id}/cancel", timeout=10).json()
    assert cancel["status"] in ("cancelling", "cancelled")
    wait_until(lambda: jobs_of(backend, project.id)[0]["status"] == "cancelled", 60, "the cancellation", backend.log)
    count = len(project.predictions())
    time.sleep(3)
    assert len(project.predictions()) == count < 24  # nothing more after the cancel
    assert requests.post(f"{backend.url}/jobs/999999/cancel", timeout=10).status_code == 404


def test_activating_a_new_version_re_predicts_only_unlabelled_tasks(label_studio, backend):
    project = Project(label_studio, backend, "activate", {**FAST, "pipeline": "auto"})  # trained once there is one
    project.upload(6, seed=3)
    finished_jobs(backend, project.id)
    ids = project.task_ids()
    annotated = ids[:2]
    for task_id in annotated:
        project.ls.annotations.create(id=task_id, result=[{
            "from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": 96,
            "original_height": 64, "value": {"x": 10, "y": 10, "width": 30, "height": 30, "rotation": 0,
                                            "rectanglelabels": ["cat"]}}])
    # a trained version (random weights: what it predicts does not matter here) written into the registry
    registry = Registry(backend.model_dir)
    with registry.staging(project.id, DETECTOR) as staging:
        save_detector(staging, build_detector(DetectorSpec(num_classes=2, min_size=64, max_size=128),
                                              pretrained=False), ["cat", "cup"], {})
        registry.commit(staging, project.id, DETECTOR, {"classes": ["cat", "cup"], "ap50": 0.0, "ap": 0.0})
    answer = requests.post(f"{backend.url}/versions/activate", json={"project": project.id, "version": "v0001",
                                                                     "kind": "detector"}, timeout=30).json()
    assert answer["model_version"] == f"project{project.id}-detector-v0001" and answer["predict_job"]
    wait_until(lambda: (jobs_of(backend, project.id)[0]["status"], jobs_of(backend, project.id)[0]["trigger"])
               == ("done", "VERSION_ACTIVATED"), 240, "the re-prediction", backend.log)
    by_task = {}
    for prediction in project.predictions():
        by_task.setdefault(prediction["task"], set()).add(prediction["model_version"])
    new = f"project{project.id}-detector-v0001"
    assert {t for t, versions in by_task.items() if new in versions} == set(ids) - set(annotated)
    assert jobs_of(backend, project.id)[0]["result"]["skipped"] == {"annotated": 2, "already predicted": 0}
    # Label Studio's score column and pre-labels follow the new version
    settings = requests.get(f"{label_studio.url}/api/projects/{project.id}", headers=project.headers, timeout=30).json()
    assert settings["model_version"] == new, settings["model_version"]
    # the job looked for reviewed tasks to calibrate its scores on: the two annotated ones, too few to fit
    stored = json.loads((backend.model_dir / "projects" / str(project.id) / "calibration.json").read_text())
    assert stored["reviewed"] == 2 and stored["calibration"] is None and "at least 20" in stored["reason"], stored


@pytest.fixture()
def hourly_backend(label_studio, tmp_path):
    """A backend at the default CALIBRATION_REFRESH_S (1 h): within a test only the growth of the reviews refits."""
    server = BackendServer(tmp_path / "hourly", label_studio.url, label_studio.token, PIPELINE="lime",
                           PRELOAD_MODELS="false")
    yield server
    server.stop()


def test_reviewed_tasks_decide_the_review_order_from_both_views(label_studio, hourly_backend):
    """Predict jobs record the regions found on each image's mirror beside its raw score; once 24 tasks are reviewed
    in Label Studio (every third pre-label deleted, the rest kept), the next job's calibration reads them with Label
    Studio's export (at once, though the first jobs fitted it, without reviews, minutes ago: the reviews have grown
    past 20), fits the learned region model and the count model (on the image embeddings the jobs recorded) out of
    fold and states which score orders the project and why."""
    backend = hourly_backend
    project = Project(label_studio, backend, "review-order", FAST)
    project.upload(24, seed=4)
    finished_jobs(backend, project.id)
    predictions = sorted(project.predictions(), key=lambda p: p["task"])
    assert len({p["task"] for p in predictions}) == 24
    for k, prediction in enumerate(predictions):
        boxes = [{key: r[key] for key in ("from_name", "to_name", "type", "original_width", "original_height",
                                          "value")} for r in prediction["result"] if r["type"] == "rectanglelabels"]
        project.ls.annotations.create(id=prediction["task"], result=boxes if k % 3 else [])
    response = requests.post(f"{backend.url}/jobs", json={"project": project.id, "kind": "predict"}, timeout=10)
    assert response.status_code in (200, 201, 202), response.text
    wait_until(lambda: jobs_of(backend, project.id)[0]["id"] == response.json()["job"] and jobs_of(
        backend, project.id)[0]["status"] == "done", 240, "the predict job that refits the calibration", backend.log)
    stored = json.loads((backend.model_dir / "projects" / str(project.id) / "calibration.json").read_text())
    evidence = stored["region_model"]
    assert stored["reviewed"] == 24 and evidence["tasks"] == 24, stored  # every review read with its mirror regions
    assert stored["annotated"] == 24 and time.time() - stored["fitted_at"] < 240, stored
    assert evidence["score"] in ("learned", "default") and evidence["reason"], evidence
    assert evidence["spearman_default"] is not None and evidence["spearman_learned"] is not None, evidence
    if evidence["score"] == "learned":
        assert stored["calibration"]["region_model"]["n_tasks"] == 24
    else:
        assert stored["calibration"] is None or "region_model" not in stored["calibration"]
    counts = stored["count_model"]  # the jobs recorded every task image's embedding: the count model read them all
    assert counts["tasks"] == 24 and counts["score"] in ("count", "default") and counts["reason"], counts
    assert counts["spearman_default"] is not None and counts["spearman_count"] is not None, counts
    assert (counts["score"] == "count") == bool((stored["calibration"] or {}).get("count_model")), stored


@pytest.fixture
def impatient_backend(label_studio, tmp_path):
    """A backend whose /predict deadline (0.05 s) no request of more than one image fits, once one was measured."""
    server = BackendServer(tmp_path / "impatient", label_studio.url, label_studio.token, PIPELINE="lime",
                           PRELOAD_MODELS="false", PREDICT_DEADLINE_S="0.05")
    yield server
    server.stop()


def test_a_retrieve_too_big_for_one_request_is_finished_by_a_background_job(label_studio, impatient_backend, browser,
                                                                           shots):
    """Label Studio's "Retrieve Predictions" sends every selected task in one request, never retries and reports
    "Retrieved N predictions" whatever the answer. A request over the deadline is refused (503) and its tasks are
    handed to the project's predict job: every selected task gets its prediction in Label Studio, with no other
    click, though the project pre-labels nothing by itself (auto_predict off). Clicked in Label Studio's own Data
    Manager, in a real browser."""
    backend = impatient_backend
    project = Project(label_studio, backend, "Retrieve over the deadline", {**FAST, "auto_predict": False})
    project.upload(6, seed=7)
    ids = project.task_ids()
    project.ls.actions.create(id="retrieve_tasks_predictions", project=project.id,  # one task: measured, answered
                              selected_items={"all": False, "included": [ids[0]]})
    assert [p["task"] for p in project.predictions()] == [ids[0]], backend.log.read_text()[-3000:]
    assert jobs_of(backend, project.id) == []  # auto_predict off: nothing pre-labelled by itself
    context = browser.new_context(viewport={"width": 1400, "height": 800})
    context.set_default_timeout(30_000)
    page = context.new_page()
    login(page, label_studio)
    page.goto(f"{label_studio.url}/projects/{project.id}/data")
    page.wait_for_selector("[data-testid=table-row]")
    page.locator('input[aria-label="Select all rows"]').first.click()
    page.locator('button[aria-label="Tasks Actions"]').first.click()
    page.locator(".lsf-menu-dm__item", has_text="Retrieve Predictions").first.click()
    page.locator("button", has_text="OK").last.click()
    (job,) = wait_until(lambda: jobs_of(backend, project.id), 60, "the hand-over job", backend.log)
    assert job["trigger"] == "RETRIEVE" and job["options"]["tasks"] == ids[1:], job
    finished_jobs(backend, project.id)
    assert sorted(p["task"] for p in project.predictions()) == ids, backend.log.read_text()[-3000:]
    assert f"handed to predict job {job['id']}" in backend.log.read_text()
    page.reload()
    page.wait_for_selector("[data-testid=table-row]")
    footer = page.get_by_text(re.compile(r"Predictions:\s*\d+"))
    wait_until(lambda: footer.inner_text().split(":")[-1].strip() == str(len(ids)), 30, "the footer's count")
    page.screenshot(path=str(shots / "retrieve_handed_over.png"))
    context.close()
