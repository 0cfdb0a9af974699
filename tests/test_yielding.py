"""A training yields the cores to its own project's running predict job, on a CPU only, within its budget
(backend/jobs/yielding.py)."""

import threading
import time

import pytest

from backend.core.cancel import StopFlag
from backend.core.errors import Cancelled
from backend.jobs.yielding import TrainingYield, project_predicting


def _busy_for(seconds: float):
    """busy() that holds for `seconds` from now, and a list counting its calls."""
    until, calls = time.monotonic() + seconds, []

    def busy():
        calls.append(1)
        return time.monotonic() < until
    return busy, calls


# (device, budget s, busy for s, expected: waits about the busy spell)
@pytest.mark.parametrize("device,budget,busy_s,waits", [
    ("cpu", 60.0, 0.6, True),
    ("cpu", 60.0, 0.0, False),
    ("cpu", 0.0, 0.6, False),  # TRAIN_YIELD_S 0: the cores are shared
    ("cuda", 60.0, 0.6, False),  # GPUs interleave
])
def test_training_yield(device, budget, busy_s, waits):
    busy, _ = _busy_for(busy_s)
    waited = TrainingYield(device, budget, busy, poll_s=0.05)()
    assert (0.45 <= waited < 3.0) if waits else waited == 0.0


def test_the_budget_is_spent_then_the_training_shares_the_cores():
    busy, _ = _busy_for(60.0)
    yielding = TrainingYield("cpu", 0.3, busy, poll_s=0.05)
    first = yielding()
    time.sleep(0.06)
    assert 0.25 <= first < 1.5 and yielding() == 0.0 and not yielding.active


def test_between_steps_the_job_table_is_read_at_most_every_poll():
    busy, calls = _busy_for(0.0)
    yielding = TrainingYield("cpu", 60.0, busy, poll_s=10.0)
    for _ in range(50):  # 50 training steps in a row
        assert yielding() == 0.0
    assert len(calls) == 1


def test_a_stop_ends_the_wait():
    stop = StopFlag()
    busy, _ = _busy_for(60.0)
    threading.Timer(0.3, stop.set, args=("shutting down",)).start()
    asked = time.monotonic()
    with pytest.raises(Cancelled):
        TrainingYield("cpu", 60.0, busy, stop, poll_s=0.05)()
    assert time.monotonic() - asked < 2.0


# running jobs → whether project 1's training yields
@pytest.mark.parametrize("running,yields", [
    ([], False),
    ([{"project_id": 1, "kind": "predict"}], True),
    ([{"project_id": "1", "kind": "predict"}], True),
    ([{"project_id": 2, "kind": "predict"}], False),  # another project's pre-labelling: shared, never waited for
    ([{"project_id": 1, "kind": "review"}, {"project_id": 1, "kind": "train"}], False),
    ([{"project_id": 2, "kind": "predict"}, {"project_id": 1, "kind": "predict"}], True),
])
def test_project_predicting(running, yields):
    assert project_predicting(lambda: running, 1, "predict")() is yields


def test_an_unreadable_job_table_never_stops_a_training():
    def broken():
        raise OSError("database is locked")
    assert project_predicting(broken, 1, "predict")() is False
