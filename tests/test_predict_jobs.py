"""Background prediction jobs, the parts that need no Label Studio: which tasks a job predicts, how requests
coalesce, and the parts table (claiming, taking over from dead workers, totals). The whole job runs against a
real Label Studio in tests/e2e/test_predict_jobs.py."""

import os
import time

import pytest

from backend.jobs import parts as parts_module
from backend.jobs.parts import JobParts
from backend.jobs.prediction import merge_options, tasks_to_predict
from backend.jobs.queue import JobQueue
from backend.store.database import Database


def _task(task_id, annotations=0, has_version=False):
    return {"id": task_id, "data": {"image": f"/data/upload/{task_id}.png"}, "total_annotations": annotations,
            "has_version": has_version}


TASKS = [_task(1), _task(2, annotations=1), _task(3, has_version=True), _task(4), _task(5)]


# (options, ids predicted, skipped counts, unknown ids)
@pytest.mark.parametrize("options,predicted,skipped,unknown", [
    ({}, [1, 4, 5], {"annotated": 1, "already predicted": 1}, []),  # every unannotated task without v1
    ({"overwrite": True}, [1, 3, 4, 5], {"annotated": 1, "already predicted": 0}, []),
    ({"tasks": [2, 3, 5]}, [2, 5], {"annotated": 0, "already predicted": 1}, []),  # listed: annotated ones too
    ({"tasks": [3], "overwrite": True}, [3], {"annotated": 0, "already predicted": 0}, []),
    ({"tasks": [1, 99]}, [1], {"annotated": 0, "already predicted": 0}, [99]),
    # every task, with ids asked for by name while it was pending: those as a listed job would take them
    ({"tasks": None, "listed": [2]}, [1, 2, 4, 5], {"annotated": 0, "already predicted": 1}, []),
    ({"tasks": None, "listed": [2, 3]}, [1, 2, 4, 5], {"annotated": 0, "already predicted": 1}, []),
    ({"tasks": None, "listed": [3], "listed_overwrite": True}, [1, 3, 4, 5], {"annotated": 1, "already predicted": 0},
     []),
    ({"tasks": None, "overwrite": True, "listed": [2]}, [1, 2, 3, 4, 5], {"annotated": 0, "already predicted": 0}, []),
    ({"tasks": None, "overwrite": True, "listed": [3], "listed_overwrite": False}, [1, 3, 4, 5],
     {"annotated": 1, "already predicted": 0}, []),
    ({"tasks": None, "listed": [99]}, [1, 4, 5], {"annotated": 1, "already predicted": 1}, [99]),
])
def test_tasks_to_predict(options, predicted, skipped, unknown):
    todo, skipped_counts, missing = tasks_to_predict(TASKS, options)
    assert [t["id"] for t in todo] == predicted and skipped_counts == skipped
    assert [m["task"] for m in missing] == unknown


ALL, ALL_OVERWRITE = {"tasks": None, "overwrite": False}, {"tasks": None, "overwrite": True}


@pytest.mark.parametrize("pending,new,merged", [
    (ALL, ALL, ALL),
    (ALL, ALL_OVERWRITE, ALL_OVERWRITE),
    ({"tasks": [1, 2], "overwrite": False}, {"tasks": [2, 3], "overwrite": True}, {"tasks": [1, 2, 3], "overwrite": True}),
    # a listed request joining a job over every task: kept by name, with its own overwrite
    (ALL, {"tasks": [3], "overwrite": False}, {**ALL, "listed": [3], "listed_overwrite": False}),
    ({"tasks": [4], "overwrite": True}, ALL, {**ALL, "listed": [4], "listed_overwrite": True}),
    ({**ALL, "listed": [4], "listed_overwrite": True}, {"tasks": [1, 4], "overwrite": False},
     {**ALL, "listed": [1, 4], "listed_overwrite": True}),
    ({**ALL, "listed": [4], "listed_overwrite": False}, ALL_OVERWRITE,
     {**ALL_OVERWRITE, "listed": [4], "listed_overwrite": False}),
])
def test_requests_for_one_pending_job_merge(pending, new, merged):
    assert merge_options(pending, new) == merged


def test_a_pending_job_refuses_to_hold_more_ids_than_it_may(monkeypatch):
    from backend.core.errors import BadRequest
    from backend.jobs import prediction
    monkeypatch.setattr(prediction, "MAX_JOB_TASKS", 3)
    with pytest.raises(BadRequest, match="would hold 4 task ids"):
        merge_options({"tasks": [1, 2], "overwrite": False}, {"tasks": [3, 4], "overwrite": False})
    with pytest.raises(BadRequest, match="would hold 4 listed task ids"):
        merge_options({**ALL, "listed": [1, 2]}, {"tasks": [3, 4], "overwrite": False})


def test_pending_predict_job_coalesces_its_options(tmp_path):
    queue = JobQueue(Database(tmp_path / "s.sqlite"))
    first, created = queue.enqueue(1, "predict", "API", {"tasks": [1], "overwrite": False}, merge_options)
    second, again = queue.enqueue(1, "predict", "API", {"tasks": [2], "overwrite": False}, merge_options)
    assert created and not again and first == second
    assert queue.get(first)["options"] == {"tasks": [1, 2], "overwrite": False}


def test_parts_claim_progress_and_totals(tmp_path):
    db = Database(tmp_path / "s.sqlite")
    queue, parts = JobQueue(db), JobParts(db)
    job_id, _ = queue.enqueue(1, "predict", "API")
    assert parts.plan(job_id, [[{"id": 1, "data": {}}, {"id": 2, "data": {}}], [{"id": 3, "data": {}}]]) == 2
    first = parts.claim(job_id)
    assert first["part"] == 0 and first["attempts"] == 1 and [t["id"] for t in first["tasks"]] == [1, 2]
    assert parts.claim(job_id, 0) is None  # running in a live worker (this process): not claimable
    parts.progress(job_id, 0, 1, 2, 3.5, [{"task": 2, "reason": "broken"}])
    parts.finish(job_id, 0)
    assert parts.claim(job_id)["part"] == 1
    summary = parts.summary(job_id)
    assert summary["parts"] == {"done": 1, "running": 1} and summary["tasks"] == 3 and summary["done"] == 1
    assert summary["failed"] == [{"task": 2, "reason": "broken"}] and summary["seconds"] == 3.5


def test_parts_of_dead_or_silent_workers_are_taken_over(tmp_path, monkeypatch):
    db = Database(tmp_path / "s.sqlite")
    job_id, _ = JobQueue(db).enqueue(1, "predict", "API")
    parts = JobParts(db)
    parts.plan(job_id, [[{"id": 1, "data": {}}], [{"id": 2, "data": {}}]])
    parts.claim(job_id)
    db.connect().execute("UPDATE job_parts SET worker = ? WHERE part = 0", (f"{os.uname().nodename}:999999999",))
    retaken = parts.claim(job_id, 0)  # its worker is gone
    assert retaken["part"] == 0 and retaken["attempts"] == 2
    parts.claim(job_id, 1)
    db.connect().execute("UPDATE job_parts SET worker = 'other-host:1', updated_at = ? WHERE part = 1",
                         (time.time() - 10,))
    assert parts.claim(job_id, 1) is None  # another host, recently heard from: left alone
    monkeypatch.setattr(parts_module, "STALE_S", 5.0)
    assert parts.claim(job_id, 1)["attempts"] == 2  # silent for longer than STALE_S: taken over


def test_cancel_pending_and_running_jobs(tmp_path):
    queue = JobQueue(Database(tmp_path / "s.sqlite"))
    pending, _ = queue.enqueue(1, "predict", "API")
    assert queue.request_cancel(pending) == "cancelled" and queue.get(pending)["status"] == "cancelled"
    running, _ = queue.enqueue(1, "predict", "API")
    queue.claim(running)
    assert queue.request_cancel(running) == "cancelling" and queue.cancel_requested(running)
    assert queue.request_cancel(12345) is None
