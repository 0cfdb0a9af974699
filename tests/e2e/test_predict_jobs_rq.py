"""Scale-out of background pre-annotation: with REDIS_URL a predict job fans out into parts that several RQ worker
processes run in parallel against the same MODEL_DIR; the job's record aggregates them and every task gets
exactly one prediction."""

import os
import subprocess
import sys
from collections import Counter

import pytest

from tests.e2e.servers import ROOT, BackendServer
from tests.e2e.projects import FAST, Project, finished_jobs

pytestmark = pytest.mark.e2e


def test_a_predict_job_fans_out_to_several_rq_workers(label_studio, redis_url, tmp_path):
    settings = {"PIPELINE": "lime", "PRELOAD_MODELS": "false", "REDIS_URL": redis_url, "PREDICT_PART_TASKS": "6"}
    backend = BackendServer(tmp_path / "backend", label_studio.url, label_studio.token, **settings)
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "MODEL_DIR": str(backend.model_dir), "DEVICE": "cpu", **settings}
    workers = [subprocess.Popen([sys.executable, "-m", "backend.jobs.rq_queue"], env=env, cwd=ROOT,
                                stdout=(tmp_path / f"worker{i}.log").open("w"), stderr=subprocess.STDOUT)
               for i in range(2)]
    try:
        project = Project(label_studio, backend, "rq-fan-out", FAST)
        project.upload(30, seed=7)
        (job,) = finished_jobs(backend, project.id, 400)
    finally:
        for worker in workers:
            worker.terminate()
        stopped = [_exited_within(worker, 30) for worker in workers]  # SIGTERM: a worker stops within seconds
        backend.stop()
    logs = "\n".join((tmp_path / f"worker{i}.log").read_text()[-2000:] for i in range(2))
    assert all(stopped), logs
    assert job["status"] == "done", (job, logs)
    assert job["result"]["predicted"] == 30 and job["result"]["failed"] == []
    assert len(job["result"]["workers"]) == 2, (job["result"], logs)  # both worker processes ran parts
    assert not any(w.endswith(f":{backend.process.pid}") for w in job["result"]["workers"])
    per_task = Counter(p["task"] for p in project.predictions())
    assert len(per_task) == 30 and set(per_task.values()) == {1}


def _exited_within(process: subprocess.Popen, timeout_s: float) -> bool:
    try:
        process.wait(timeout_s)
        return True
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False
