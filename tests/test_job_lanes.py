"""Fair jobs: predict and review jobs never queue behind a training job (of the same project or another), and at most
one training runs per project; the in-process runner's lanes (`backend.jobs.runner.default_lanes`)."""

import threading
import time

from backend.jobs.queue import JobQueue
from backend.jobs.runner import JobRunner, default_lanes
from backend.store.database import Database


def wait_for(predicate, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_work_jobs_start_at_once_while_trainings_run(tmp_path):
    queue = JobQueue(Database(tmp_path / "state.sqlite"))
    release = threading.Event()
    started: dict[int, float] = {}

    def training(job, stop):
        started[job["id"]] = time.monotonic()
        release.wait(30)  # a 15-minute training, as far as the other lanes can tell
        return {"detector": {"version": "v", "activated": False}}

    def work(job, stop):
        started[job["id"]] = time.monotonic()
        return {"total": 0, "predicted": 0, "failed": []}

    runner = JobRunner(queue, {"train": training, "predict": work, "review": work}, poll_s=0.5,
                       lanes=default_lanes(2)).start()
    try:
        train_a, _ = queue.enqueue(1, "train", "START_TRAINING")
        wait_for(lambda: train_a in started)
        train_b, _ = queue.enqueue(2, "train", "START_TRAINING")  # another project's training: waits for the lane
        asked = time.monotonic()
        review_b, _ = queue.enqueue(2, "review", "API")
        predict_a, _ = queue.enqueue(1, "predict", "VERSION_ACTIVATED")  # the same project's re-prediction
        wait_for(lambda: review_b in started and predict_a in started)
        assert started[review_b] - asked < 2 and started[predict_a] - asked < 2, started
        assert queue.get(review_b)["status"] == "done" and queue.get(predict_a)["status"] == "done"
        assert train_b not in started and queue.get(train_b)["status"] == "pending"
        assert queue.enqueue(1, "train", "START_TRAINING")[1]  # a second training of project 1 may be pending ...
        time.sleep(1.0)
        assert [j["status"] for j in queue.jobs(1, kind="train")] == ["pending", "running"]  # ... but never runs
        release.set()
        wait_for(lambda: all(j["status"] == "done" for j in queue.jobs(kind="train")), 20)
    finally:
        release.set()
        runner.stop()
