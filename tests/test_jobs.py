"""Webhook events → coalesced training jobs, recovery after a crash, registry versions."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from backend.jobs.queue import JobQueue
from backend.jobs.runner import JobRunner
from backend.store.database import Database
from backend.registry.versions import Registry
from backend.service.app import create_app

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ('<View><Image name="image" value="$image"/><Choices name="category" toName="image">'
          '<Choice value="cat"/><Choice value="cup"/></Choices></View>')


def _event(action, project=7, total=None, annotation=1):
    body = {"action": action, "project": {"id": project}}
    if total is not None:
        body["project"]["total_annotations_number"] = total
    if action.startswith("ANNOTATION"):
        body["annotation"] = {"id": annotation, "task": annotation, "project": project}
    return body


@pytest.fixture()
def client(make_settings):
    """Project 7 set up; the predict job its Connect enqueued (trigger SETUP) is cancelled, so the tests see only
    what their events make (`live_jobs`)."""
    app = create_app(make_settings(run_jobs=False))
    client = app.test_client()
    assert client.post("/setup", json={"project": "7", "schema": CONFIG}).status_code == 200
    (setup_job,) = client.get("/jobs?project=7").get_json()["jobs"]
    assert setup_job["kind"] == "predict" and setup_job["trigger"] == "SETUP"
    client.post(f"/jobs/{setup_job['id']}/cancel")
    return client


def live_jobs(client, query: str = "") -> list[dict]:
    """Jobs not cancelled (the fixture cancels the Connect's predict job)."""
    return [j for j in client.get(f"/jobs{query}").get_json()["jobs"] if j["status"] != "cancelled"]


def test_burst_of_500_events_makes_one_job(client):
    """(How fast the webhook answers under load is measured by bench/load.py: `webhook_max_s`.)"""
    for i in range(500):
        response = client.post("/webhook", json=_event("ANNOTATION_CREATED", total=20 + i, annotation=i))
        assert response.status_code == 200
    client.post("/webhook", json=_event("START_TRAINING"))
    jobs = live_jobs(client, "?project=7")
    assert len(jobs) == 1 and jobs[0]["status"] == "pending"
    assert client.get("/health").get_json()["jobs"] == {"pending": 1, "cancelled": 1}


# (kind, new version's metrics incl. the active version's scores on the same tasks, activated?)
@pytest.mark.parametrize("kind,metrics,activated", [
    ("detector", {"ap50": 0.1, "ap": 0.05}, True),  # nothing active yet
    ("detector", {"ap50": 0.1, "ap": 0.05, "baseline_ap50": None, "baseline_ap": None}, True),
    ("detector", {"ap50": 0.6, "ap": 0.2, "baseline_ap50": 0.5, "baseline_ap": 0.3}, True),  # AP50 first
    ("detector", {"ap50": 0.5, "ap": 0.31, "baseline_ap50": 0.5, "baseline_ap": 0.3}, True),  # tie: AP decides
    ("detector", {"ap50": 0.5, "ap": 0.3, "baseline_ap50": 0.5, "baseline_ap": 0.3}, False),  # equal: keep
    ("detector", {"ap50": 0.4, "ap": 0.9, "baseline_ap50": 0.5, "baseline_ap": 0.1}, False),
    ("classifier", {"accuracy": 0.7}, True),
    ("classifier", {"accuracy": 0.8, "baseline_accuracy": 0.8}, True),  # ties keep the newer
    ("classifier", {"accuracy": 0.79, "baseline_accuracy": 0.8}, False),
])
def test_activation_rule(kind, metrics, activated):
    from backend.jobs.training import is_better

    assert is_better(kind, metrics) is activated


@pytest.mark.parametrize("events,expected_jobs", [
    ([_event("ANNOTATION_CREATED", total=50, annotation=i) for i in range(4)], 0),  # too few new ones
    ([_event("ANNOTATION_CREATED", total=50, annotation=i) for i in range(5)], 1),
    ([_event("ANNOTATIONS_CREATED", annotation=i) for i in range(5)], 1),  # bulk creation counts too
    ([_event("START_TRAINING")], 1),  # "Start training" always
    ([_event("TASKS_CREATED")], 1),  # a predict job for the new tasks
    ([_event("TASKS_CREATED"), _event("TASKS_CREATED")], 1),  # coalesced
    ([_event("START_TRAINING", project=99)], 0),  # a project never set up (/setup) gets no job
    ([_event("ANNOTATION_CREATED", project=99, annotation=i) for i in range(9)], 0),
])
def test_triggers(client, events, expected_jobs):
    for event in events:
        client.post("/webhook", json=event)
    assert len(live_jobs(client)) == expected_jobs


def test_connect_enqueues_a_predict_job_once_per_setup_change(client):
    for _ in range(3):  # Label Studio sends /setup on every view of the Model page: the same setup, no new job
        client.post("/setup", json={"project": "7", "schema": CONFIG})
    assert live_jobs(client) == []
    client.post("/setup", json={"project": "7", "schema": CONFIG, "extra_params": {"num_samples": 64}})
    (job,) = live_jobs(client)
    assert job["kind"] == "predict" and job["trigger"] == "SETUP"


def test_auto_predict_off_makes_no_predict_job(client):
    client.post("/setup", json={"project": "7", "schema": CONFIG, "extra_params": {"auto_predict": False}})
    client.post("/webhook", json=_event("TASKS_CREATED"))
    assert live_jobs(client, "?project=7") == []


def test_thresholds_per_project(client):
    client.post("/setup", json={"project": "7", "schema": CONFIG, "extra_params": {
        "train_min_annotations": 1, "train_min_new": 1, "auto_predict": False}})
    client.post("/webhook", json=_event("ANNOTATION_CREATED", total=1))
    assert len(live_jobs(client, "?project=7")) == 1


@pytest.mark.parametrize("label_studio_count,reported,trains", [
    (3, 500, False),  # the event body's count is never trusted: Label Studio's own says 3 < 10
    (12, 0, True),
])
def test_annotation_job_checks_the_count_in_label_studio(peer, make_settings, label_studio_count, reported, trains):
    """An annotation-triggered job re-reads the project's annotation count from the Label Studio API: below
    `train_min_annotations` it ends at once as skipped (a forged burst cannot start training)."""
    import json as json_

    peer.routes["/api/projects/7"] = (200, json_.dumps({"id": 7, "total_annotations_number": label_studio_count})
                                      .encode(), {})
    peer.routes["/api/projects/7/export?exportType=JSON"] = (200, b"[]", {})
    app = create_app(make_settings(run_jobs=False, label_studio_url=peer.url, label_studio_api_key="k" * 40))
    client = app.test_client()
    client.post("/setup", json={"project": "7", "schema": CONFIG, "extra_params": {"auto_predict": False}})
    for i in range(5):
        client.post("/webhook", json=_event("ANNOTATION_CREATED", total=reported, annotation=i))
    runtime = app.extensions["runtime"]
    assert JobRunner(runtime.context.jobs, {"train": runtime.context.run_job}).run_once()
    (job,) = client.get("/jobs?project=7").get_json()["jobs"]
    if trains:  # got past the count: the (empty) export has nothing to train on
        assert job["status"] == "skipped" and "at least 2 classes" in job["message"], job
    else:
        assert job["status"] == "skipped" and "has 3 annotations; training starts at 10" in job["message"]
    assert ("/api/projects/7/export?exportType=JSON" in [path for path, _ in peer.requests]) == trains


def test_failing_job_reports_why_and_service_keeps_serving(make_settings):
    app = create_app(make_settings(run_jobs=False))
    client = app.test_client()
    client.post("/setup", json={"project": "8", "schema": CONFIG.replace("Choices", "KeyPointLabels")
                                .replace("Choice ", "Label "), "extra_params": {"auto_predict": False}})
    client.post("/webhook", json=_event("START_TRAINING", project=8))
    runtime = app.extensions["runtime"]
    assert JobRunner(runtime.context.jobs, {"train": runtime.context.run_job}).run_once()
    (job,) = client.get("/jobs?project=8").get_json()["jobs"]
    assert job["status"] == "failed" and "nothing trainable" in job["message"]
    assert client.get("/health").get_json()["status"] == "UP"


def test_recover_requeues_jobs_of_dead_workers(tmp_path):
    queue = JobQueue(Database(tmp_path / "s.sqlite"))
    db = queue.db.connect()
    dead_here = f"{os.uname().nodename}:999999999"
    job_id, _ = queue.enqueue(1, "train", "START_TRAINING")
    queue.claim()
    db.execute("UPDATE jobs SET worker = 'another-host:1' WHERE id = ?", (job_id,))
    assert queue.recover() == 0  # another machine's worker: cannot tell, left running
    db.execute("UPDATE jobs SET worker = ? WHERE id = ?", (dead_here, job_id))
    assert queue.recover() == 1 and queue.jobs()[0]["status"] == "pending"

    assert queue.claim()["id"] == job_id
    db.execute("UPDATE jobs SET worker = ? WHERE id = ?", (dead_here, job_id))
    newer, created = queue.enqueue(1, "train", "ANNOTATION_CREATED")  # allowed: the other one is running
    assert created
    assert queue.recover() == 0
    statuses = {j["id"]: (j["status"], j["message"]) for j in queue.jobs()}
    assert statuses[job_id][0] == "failed" and "newer job" in statuses[job_id][1]
    assert statuses[newer][0] == "pending"


def test_registry_versions_activate_and_rollback(tmp_path):
    registry = Registry(tmp_path)
    assert registry.active(3, "classifier") is None
    names = []
    for accuracy in (0.8, 0.9):
        staging = registry.staging_dir(3, "classifier")
        (staging / "classifier.pt").write_bytes(b"weights")
        names.append(registry.commit(staging, 3, "classifier", {"accuracy": accuracy}).name)
        registry.activate(3, "classifier", names[-1])
    assert names == ["v0001", "v0002"] and registry.active(3, "classifier").name == "v0002"
    assert registry.activate(3, "classifier", "v0001").model_version == "project3-classifier-v0001"  # rollback
    assert registry.active(3, "classifier").metrics["accuracy"] == 0.8
    with pytest.raises(KeyError):
        registry.activate(3, "classifier", "v0099")
    leftover = registry.staging_dir(3, "classifier")
    (leftover / "half-written").write_bytes(b"x")
    assert registry.clean_staging() == 1 and not leftover.exists()
    assert [v.name for v in registry.versions(3, "classifier")] == ["v0001", "v0002"]


def test_sigkill_during_a_job_keeps_the_active_version_and_reruns_the_job(tmp_path):
    """A worker process killed with SIGKILL mid-job: on restart no partial version, the previous version still
    active, and the job runs again."""
    registry = Registry(tmp_path)
    staging = registry.staging_dir(5, "classifier")
    (staging / "classifier.pt").write_bytes(b"v1")
    registry.activate(5, "classifier", registry.commit(staging, 5, "classifier", {"accuracy": 0.7}).name)
    queue = JobQueue(Database(tmp_path / "backend.sqlite"))
    queue.enqueue(5, "train", "START_TRAINING")
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from backend.jobs.queue import JobQueue
        from backend.jobs.runner import JobRunner
        from backend.store.database import Database
        from backend.registry.versions import Registry
        registry = Registry(Path({str(tmp_path)!r}))
        def train(job, stop):
            staging = registry.staging_dir(job["project_id"], "classifier")
            (staging / "classifier.pt").write_bytes(b"half")
            print("training", flush=True)
            time.sleep(60)
        JobRunner(JobQueue(Database(Path({str(tmp_path / "backend.sqlite")!r}))), {{"train": train}}).run_once()
    """)
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert worker.stdout.readline().strip() == "training"
    assert queue.jobs()[0]["status"] == "running"
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(10)

    # restart: what Runtime does at start-up
    assert registry.clean_staging() == 1
    assert queue.recover() == 1
    assert registry.active(5, "classifier").name == "v0001"
    assert [v.name for v in registry.versions(5, "classifier")] == ["v0001"]
    ran = []
    JobRunner(queue, {"train": lambda job, stop: ran.append(job["id"]) or {"ok": True}}).run_once()
    (job,) = queue.jobs()
    assert ran == [job["id"]] and job["status"] == "done" and job["attempts"] == 2
