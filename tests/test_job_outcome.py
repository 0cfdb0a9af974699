"""How jobs end (`backend.jobs.outcome`): table-driven rules for predict, train and skipped jobs, and the runner
applying them."""

import pytest

from backend.jobs.outcome import job_outcome, top_reasons
from backend.jobs.queue import JobQueue
from backend.jobs.runner import JobRunner
from backend.store.database import Database

BROKEN = {"task": 1, "reason": "image URL 'http://ls/data/upload/1/a.png' returned HTTP 404"}


def failed(n: int, reason: str = "image URL 'http://ls/x{}.png' returned HTTP 404") -> list[dict]:
    return [{"task": i, "reason": reason.format(i)} for i in range(n)]


PREDICT_CASES = [
    # (result, status, words the message must contain)
    ({"total": 10, "predicted": 10, "failed": []}, "done", ["10 tasks predicted"]),
    ({"total": 10, "predicted": 7, "failed": failed(3)}, "done",
     ["7 of 10 tasks predicted", "3 failed", "3× image URL '…' returned HTTP 404"]),
    ({"total": 4, "predicted": 0, "failed": failed(4)}, "failed", ["all 4 tasks failed", "4×"]),
    ({"total": 2, "predicted": 0, "failed": failed(2, "Label Studio refused the prediction: HTTP 401: bad ({})")},
     "failed", ["all 2 tasks failed", "HTTP 401"]),
    ({"total": 0, "predicted": 0, "failed": [], "skipped": {"annotated": 3, "already predicted": 5}}, "done",
     ["nothing to predict", "3 annotated", "5 already predicted"]),
    ({"total": 0, "predicted": 0, "failed": [{"task": 9, "reason": "not a task of this project"}]}, "failed",
     ["all 1 tasks failed", "not a task of this project"]),
    ({"total": 5, "predicted": 5, "failed": [], "not_predicted": {"person": "no class matches"}}, "done",
     ["5 tasks predicted", "labels not pre-labelled: person"]),
    ({"skipped": "project 3 has 5 annotations; training starts at 10"}, "skipped", ["training starts at 10"]),
]


TRAIN_CASES = [
    ({"skipped": "project 3 has 5 annotations; training starts at 10 (train_min_annotations)"}, "skipped",
     ["5 annotations", "starts at 10"]),
    ({"skipped": "needs image-level labels", "classifier": {"skipped": "needs image-level labels"}}, "skipped",
     ["image-level labels"]),
    ({"detector": {"version": "project3-detector-v0002", "activated": True, "ap50": 0.41, "baseline_ap50": 0.38}},
     "done", ["v0002", "ap50 0.410 vs 0.380 active", "activated"]),
    ({"detector": {"version": "project3-detector-v0003", "activated": False, "ap50": 0.2, "baseline_ap50": 0.38},
      "classifier": {"skipped": "too few Choices"}}, "done", ["not activated", "classifier skipped: too few Choices"]),
    ({"classifier": {"version": "project3-classifier-v0001", "activated": True, "accuracy": 0.9,
                     "baseline_accuracy": None}}, "done", ["accuracy 0.900", "activated"]),
    # train_draw_seconds 0: what the version's cuts were fitted for
    ({"detector": {"version": "project3-detector-v0004", "activated": True, "ap50": 0.4, "drawing_time": {
        "seconds_per_box": 25.5, "low": 24.0, "high": 27.0, "n_annotations": 30, "applied_s": 25.5,
        "applied_from": "measured", "reason": None}}}, "done", ["cuts fitted for 25.5 s a box, measured from 30"]),
    ({"detector": {"version": "project3-detector-v0004", "activated": True, "ap50": 0.4, "drawing_time": {
        "seconds_per_box": 20.0, "low": 5.0, "high": 40.0, "n_annotations": 9, "applied_s": 7.0,
        "applied_from": "default", "reason": None}}}, "done",
     ["cuts fitted for 7 s a box until the drawing time is measured", "too uncertain (5–40 s)"]),
    ({"detector": {"version": "project3-detector-v0004", "activated": True, "ap50": 0.4, "drawing_time": {
        "seconds_per_box": None, "low": None, "high": None, "n_annotations": 3, "applied_s": 7.0,
        "applied_from": "default", "reason": "3 annotations with a lead time; a drawing time needs 8"}}}, "done",
     ["cuts fitted for 7 s a box until", "needs 8"]),
]


@pytest.mark.parametrize("kind, result, status, words", [("predict", *case) for case in PREDICT_CASES]
                         + [("train", *case) for case in TRAIN_CASES])
def test_outcome(kind, result, status, words):
    got_status, message = job_outcome(kind, result)
    assert got_status == status, message
    for word in words:
        assert word in message, (word, message)


def test_top_reasons_groups_one_cause_across_urls_most_frequent_first():
    reasons = failed(5) + failed(2, "task has no image under data.image") + [BROKEN]
    assert top_reasons(reasons) == ("6× image URL '…' returned HTTP 404; 2× task has no image under data.image")


@pytest.mark.parametrize("result, status", [
    ({"total": 3, "predicted": 0, "failed": failed(3)}, "failed"),
    ({"skipped": "nothing to train yet"}, "skipped"),
    ({"total": 3, "predicted": 3, "failed": []}, "done"),
])
def test_the_runner_finishes_jobs_by_their_outcome(tmp_path, result, status):
    queue = JobQueue(Database(tmp_path / "state.sqlite"))
    job_id, _ = queue.enqueue(1, "predict", "API")
    assert JobRunner(queue, {"predict": lambda job, stop: result}).run_once()
    job = queue.get(job_id)
    assert job["status"] == status and job["message"] == job_outcome("predict", result)[1]
    assert queue.last_finished(1, "predict")["id"] == job_id  # skipped counts as finished
