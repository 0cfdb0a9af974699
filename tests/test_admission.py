"""Admission control: at most PREDICT_CONCURRENCY /predict requests in flight and only work estimated to finish in
PREDICT_DEADLINE_S; the rest get 503 with Retry-After while /health keeps answering."""

import threading
import time

import numpy as np
import pytest

from backend.core.errors import Overloaded
from backend.service.admission import Admission
from backend.service.app import create_app
from tests.conftest import png_bytes

CONFIG = ('<View><Image name="image" value="$image"/><Choices name="c" toName="image">'
          '<Choice value="cat"/><Choice value="cup"/></Choices></View>')


# each step: ("enter", images) → admitted (True) or refused (False); ("leave", None) ends the oldest admitted one
@pytest.mark.parametrize("max_requests,per_image_s,steps", [
    (2, 0.0, [("enter", 1, True), ("enter", 1, True), ("enter", 1, False), ("leave", None, None),
              ("enter", 1, True)]),
    (4, 10.0, [("enter", 5, True), ("enter", 5, False)]),  # 50 s + 50 s > 90 s of work
    (4, 10.0, [("enter", 9, True), ("leave", None, None), ("enter", 9, True)]),  # 90 s alone: admitted
    (4, 10.0, [("enter", 20, False), ("enter", 9, True)]),  # 200 s alone: refused (Label Studio waits 100 s)
    (4, 1.0, [("enter", 30, True), ("enter", 30, True), ("enter", 31, False), ("enter", 30, True)]),
])
def test_admission_table(max_requests, per_image_s, steps):
    admission = Admission(max_requests, deadline_s=90)
    if per_image_s:
        admission.record("lime", 1, per_image_s)
    held = []
    for action, images, admitted in steps:
        if action == "leave":
            held.pop(0).__exit__(None, None, None)
            continue
        slot = admission.admit("lime", images)
        try:
            slot.__enter__()
        except Overloaded as exc:
            assert not admitted and exc.retry_after_s >= 1
            continue
        assert admitted
        held.append(slot)


def test_busy_worker_answers_503_with_retry_after_and_health_stays_fast(peer, make_settings):
    peer.routes["/data/upload/1/slow.png"] = (200, png_bytes(np.full((64, 64, 3), 90, np.uint8)), {})
    peer.delays["/data/upload/1/slow.png"] = 3.0
    settings = make_settings(label_studio_url=peer.url, label_studio_api_key="k" * 40, run_jobs=False,
                             predict_concurrency=1, threads=2)
    client = create_app(settings).test_client()
    assert client.post("/setup", json={"project": 1, "schema": CONFIG,
                                       "extra_params": {"num_samples": 16, "superpixels": 8}}).status_code == 200
    body = {"project": 1, "tasks": [{"id": 1, "data": {"image": "/data/upload/1/slow.png"}}]}
    first: dict = {}
    worker = threading.Thread(target=lambda: first.update(response=client.post("/predict", json=body)))
    worker.start()
    deadline = time.monotonic() + 10
    while client.get("/health").get_json()["predict"]["in_flight"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    refused = client.post("/predict", json=body)
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
    assert "busy" in refused.get_json()["error"] and "Handed to background predict job" in refused.get_json()["error"]
    started = time.monotonic()
    assert client.get("/health").status_code == 200
    assert time.monotonic() - started < 5.0  # the goal (< 1 s) is measured by bench/load.py
    worker.join(60)
    assert first["response"].status_code == 200 and "result" in first["response"].get_json()["results"][0]
    assert client.post("/predict", json=body).status_code == 200  # free again
    assert client.get("/health").get_json()["predict"]["refused"] == 1


# (case, set up through /setup, the tasks' ids, measured seconds per image, a job expected: its task ids or None)
HANDED_OVER = [
    ("too much for one request: handed to a job", True, [3, 1, 2], 60.0, [1, 2, 3]),
    ("a project never set up: no job", False, [1, 2], 60.0, None),
    ("tasks without ids: no job", True, [None, None], 60.0, None),
    ("fits the deadline: answered, no job", True, [1], 0.0, None),
]


@pytest.mark.parametrize("case,set_up,ids,per_image_s,job_tasks", HANDED_OVER, ids=[c[0] for c in HANDED_OVER])
def test_a_refused_retrieve_hands_its_tasks_to_a_background_job(peer, make_settings, case, set_up, ids, per_image_s,
                                                                 job_tasks):
    """Label Studio's "Retrieve Predictions" sends every selected task in one request, never retries, and says
    "Retrieved N predictions" whatever the answer: a refusal hands the tasks to the project's predict job and says
    which job, where the project was set up and the tasks have ids."""
    peer.routes["/data/upload/1/a.png"] = (200, png_bytes(np.full((64, 64, 3), 90, np.uint8)), {})
    settings = make_settings(label_studio_url=peer.url, label_studio_api_key="k" * 40, run_jobs=False)
    client = create_app(settings).test_client()
    runtime = client.application.extensions["runtime"]
    if set_up:
        assert client.post("/setup", json={"project": 1, "schema": CONFIG,
                                           "extra_params": {"num_samples": 16, "superpixels": 8}}).status_code == 200
    before = {j["id"] for j in runtime.context.jobs.jobs(1, limit=20)}
    for job in before:  # the Connect's own job (every task without a prediction) would take them in: done first
        assert client.post(f"/jobs/{job}/cancel").status_code == 200
    if per_image_s:
        runtime.admission.record("lime", 1, per_image_s)  # as measured on a slow machine: over the 90 s deadline
    tasks = [{**({"id": i} if i is not None else {}), "data": {"image": "/data/upload/1/a.png"}} for i in ids]
    response = client.post("/predict", json={"project": 1, "tasks": tasks, "label_config": CONFIG})
    new = [j for j in runtime.context.jobs.jobs(1, limit=20) if j["id"] not in before]
    if job_tasks is None:
        assert new == [] and response.status_code == (200 if not per_image_s else 503), response.get_json()
        assert "Handed to" not in str(response.get_json())
        return
    assert response.status_code == 503 and "too much for one request" in response.get_json()["error"]
    (job,) = new
    assert job["kind"] == "predict" and job["trigger"] == "RETRIEVE" and job["options"]["tasks"] == job_tasks
    assert f"Handed to background predict job {job['id']} (new)" in response.get_json()["error"]
    again = client.post("/predict", json={"project": 1, "tasks": tasks[:2], "label_config": CONFIG})  # clicked again
    assert f"predict job {job['id']} (joined)" in again.get_json()["error"]  # the same job takes them in


def test_a_refused_retrieve_joining_the_connects_job_keeps_its_tasks_by_name(peer, make_settings):
    """The Connect's own job (every task without an annotation or a prediction) is still pending when a Retrieve is
    refused: the job takes the Retrieve's tasks by name, so annotated ones among them are predicted too, as Label
    Studio's own Retrieve would."""
    settings = make_settings(label_studio_url=peer.url, label_studio_api_key="k" * 40, run_jobs=False)
    client = create_app(settings).test_client()
    runtime = client.application.extensions["runtime"]
    assert client.post("/setup", json={"project": 1, "schema": CONFIG,
                                       "extra_params": {"num_samples": 16, "superpixels": 8}}).status_code == 200
    (connects,) = runtime.context.jobs.jobs(1, limit=20)
    assert connects["options"]["tasks"] is None
    runtime.admission.record("lime", 1, 60.0)
    tasks = [{"id": i, "data": {"image": "/data/upload/1/a.png"}} for i in (5, 2)]
    response = client.post("/predict", json={"project": 1, "tasks": tasks, "label_config": CONFIG})
    assert f"Handed to background predict job {connects['id']} (joined)" in response.get_json()["error"]
    options = runtime.context.jobs.get(connects["id"])["options"]
    assert options == {"tasks": None, "overwrite": False, "listed": [2, 5], "listed_overwrite": False}
