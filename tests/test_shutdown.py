"""SIGTERM while an in-process training job runs (gunicorn, as `make serve` runs it): the worker stops the job
between two steps and exits cleanly (no SIGSEGV), the job goes back to pending, and no staging is left."""

import json
import signal
import sqlite3
import time

import requests

from tests.e2e.servers import BackendServer
from tests.synthetic_project import CONFIG, serve_project


def test_sigterm_during_training_requeues_the_job_and_exits_cleanly(peer, tmp_path):
    tasks = serve_project(peer, 6, seed=2)
    peer.routes["/api/projects/9/export?exportType=JSON"] = (200, json.dumps(tasks).encode(), {})
    server = BackendServer(tmp_path, peer.url, "k" * 40, PIPELINE="lime", PRELOAD_MODELS="false")
    try:
        extra = {"train_epochs": 10000, "train_time_budget_s": 120, "train_image_size": 128, "auto_predict": False}
        setup = {"project": 9, "schema": CONFIG, "extra_params": extra}
        assert requests.post(f"{server.url}/setup", json=setup, timeout=30).status_code == 200
        requests.post(f"{server.url}/webhook", json={"action": "START_TRAINING", "project": {"id": 9}}, timeout=5)
        staging = tmp_path / "models" / "projects" / "9" / "detector" / "versions"
        deadline = time.monotonic() + 120
        while not (list(staging.glob(".staging-*")) and "epoch 1/" in server.log.read_text()):
            assert time.monotonic() < deadline, server.log.read_text()[-3000:]
            time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(60) == 0
    finally:
        if server.process.poll() is None:
            server.process.kill()
    log = server.log.read_text()
    assert "SIGSEGV" not in log and "Traceback" not in log, log[-3000:]
    assert "stopped: interrupted by shutdown" in log
    db = sqlite3.connect(tmp_path / "models" / "backend.sqlite")
    status, message = db.execute("SELECT status, message FROM jobs WHERE project_id = 9").fetchone()
    assert (status, message) == ("pending", "interrupted by shutdown; re-queued")
    assert not list(staging.glob(".staging-*"))
