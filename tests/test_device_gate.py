"""The device gate: one model call at a time, waiters served by priority (interactive, then /predict, then
background jobs), so an interactive request waits for at most the chunk that holds the device."""

import threading
import time

from backend.core.device import BACKGROUND, INTERACTIVE, PREDICT, DeviceGate


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
