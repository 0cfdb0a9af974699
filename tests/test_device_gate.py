"""The device gate: one model call at a time, waiters served by priority (interactive, then /predict, then
background jobs), so an interactive request waits for at most the chunk that holds the device; on a CPU a training
yields to model calls (`wait_idle`, `TrainingYield`)."""

import threading
import time

import pytest

from backend.core.device import BACKGROUND, INTERACTIVE, PREDICT, DeviceGate, TrainingYield


def test_waiters_are_served_by_priority_then_arrival():
    gate, order = DeviceGate("cpu"), []
    started = threading.Event()

    def holder():
        with gate.hold(BACKGROUND):
            started.set()
            time.sleep(0.3)

    def waiter(name, priority):
        with gate.hold(priority):
            order.append(name)

    first = threading.Thread(target=holder)
    first.start()
    started.wait(5)
    threads = []
    for name, priority in [("batch-1", BACKGROUND), ("predict", PREDICT), ("batch-2", BACKGROUND),
                           ("click", INTERACTIVE)]:
        threads.append(threading.Thread(target=waiter, args=(name, priority)))
        threads[-1].start()
        time.sleep(0.02)  # arrival order
    for thread in [first, *threads]:
        thread.join(5)
    assert order == ["click", "predict", "batch-1", "batch-2"]


def test_an_interactive_request_waits_for_one_chunk_of_a_long_job_at_most():
    gate, stop, chunk_s = DeviceGate("cpu"), threading.Event(), 0.2

    def long_job():  # a 5,000-task job: chunk after chunk, each holding the device
        while not stop.is_set():
            with gate.hold(BACKGROUND):
                time.sleep(chunk_s)

    job = threading.Thread(target=long_job)
    job.start()
    time.sleep(0.1)
    waits = []
    for _ in range(5):
        asked = time.monotonic()
        with gate.hold(INTERACTIVE):
            waits.append(time.monotonic() - asked)
        time.sleep(0.05)
    stop.set()
    job.join(5)
    assert max(waits) < chunk_s + 1.0  # one chunk, plus scheduling slack on a loaded machine (not a queue of them)


def _hold_for(gate, seconds, started):
    def holder():
        with gate.hold(BACKGROUND):
            started.set()
            time.sleep(seconds)
    thread = threading.Thread(target=holder)
    thread.start()
    started.wait(5)
    return thread


def test_wait_idle_returns_at_once_on_an_unused_gate():
    assert DeviceGate("cpu").wait_idle(5.0) < 0.1


def test_wait_idle_waits_for_the_holder_and_a_quiet_spell():
    gate, started = DeviceGate("cpu"), threading.Event()
    thread = _hold_for(gate, 0.4, started)
    waited = gate.wait_idle(10.0, quiet_s=0.3)
    thread.join(5)
    assert 0.3 + 0.25 <= waited < 3.0  # the rest of the hold (~0.4 s) and the quiet spell (0.3 s)


def test_wait_idle_spans_a_job_taking_the_gate_chunk_after_chunk():
    """A predict job releases the device between chunks for milliseconds: a waiter keeps waiting until it ends."""
    gate, started, ended = DeviceGate("cpu"), threading.Event(), []

    def job():
        for _ in range(6):
            with gate.hold(BACKGROUND):
                started.set()
                time.sleep(0.1)
            time.sleep(0.01)
        ended.append(time.monotonic())

    thread = threading.Thread(target=job)
    thread.start()
    started.wait(5)
    gate.wait_idle(10.0, quiet_s=0.2)
    returned = time.monotonic()
    thread.join(5)
    assert ended and returned >= ended[0]


def test_wait_idle_gives_up_after_max_s():
    gate, started = DeviceGate("cpu"), threading.Event()
    thread = _hold_for(gate, 1.0, started)
    waited = gate.wait_idle(0.2)
    thread.join(5)
    assert 0.15 <= waited < 0.9


# (device, budget s, gate busy, expected: waits) a training yields on a CPU within its budget, never on a GPU
@pytest.mark.parametrize("device,budget,busy,waits", [
    ("cpu", 60.0, True, True),
    ("cpu", 60.0, False, False),
    ("cpu", 0.0, True, False),
    ("cuda", 60.0, True, False),
])
def test_training_yield(device, budget, busy, waits):
    gate, started = DeviceGate(device), threading.Event()
    thread = _hold_for(gate, 0.4, started) if busy else None
    waited = TrainingYield(gate, budget)()
    if thread:
        thread.join(5)
    assert (waited >= 0.3) == waits
    assert TrainingYield(gate, budget).active == (device == "cpu" and budget > 0)


def test_training_yield_spends_its_budget_then_shares():
    gate, started = DeviceGate("cpu"), threading.Event()
    thread = _hold_for(gate, 1.5, started)
    yielding = TrainingYield(gate, 0.3)
    first, second = yielding(), yielding()
    thread.join(5)
    assert 0.25 <= first < 1.0 and second == 0.0 and not yielding.active


def test_training_yield_stops_while_waiting():
    from backend.core.cancel import StopFlag
    from backend.core.errors import Cancelled

    gate, started, stop = DeviceGate("cpu"), threading.Event(), StopFlag()
    thread = _hold_for(gate, 5.0, started)
    threading.Timer(0.3, stop.set, args=("shutting down",)).start()
    asked = time.monotonic()
    with pytest.raises(Cancelled):
        TrainingYield(gate, 60.0, stop)()
    assert time.monotonic() - asked < 4.0  # within a slice of the stop, not at the end of the hold
    thread.join(10)
