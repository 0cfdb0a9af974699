"""One compute device per process, shared by interactive requests, `/predict` and background prediction: a
`DeviceGate` lets one model call run at a time and, when several wait, gives the device to the most urgent.

The rule: an interactive smart-tool request (an annotator waits, one image) goes first; then `/predict`
(Label Studio waits up to 100 s); background prediction jobs last, one chunk of images per turn, so a
5,000-task job never makes an interactive request wait for more than one chunk. Training does not take the gate:
it runs in its own job beside these turns. On a GPU the device interleaves the kernels; on a CPU, where the
operating system would split two cores between a training and a new version's re-prediction (and a training runs
nearly all the time while annotators submit), the training yields instead (`TrainingYield`, `TRAIN_YIELD_S`): it
pauses between its steps while a model call runs or waits here, so pre-labels reach annotators first.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from contextlib import contextmanager

from backend.core.cancel import NEVER, StopFlag

INTERACTIVE = 0
PREDICT = 1
BACKGROUND = 2
QUIET_S = 1.0  # the gate counts as idle once no model call has run or waited for this long (a job's next chunk
#                takes it again within milliseconds of the last: downloads are prefetched, imports run beside it)
YIELD_SLICE_S = 2.0  # a yielding training looks at its stop flag at least this often


class DeviceGate:
    """A lock whose waiters are served by priority (lower first), then in arrival order."""

    def __init__(self, device: str):
        self.device = device
        self._condition = threading.Condition()
        self._busy = False
        self._waiting: list[tuple[int, int]] = []
        self._order = itertools.count()
        self._released_at = float("-inf")  # time.monotonic() of the last release

    @contextmanager
    def hold(self, priority: int = PREDICT):
        """Hold the device for the block; waits behind the holder and behind more urgent waiters."""
        ticket = (priority, next(self._order))
        with self._condition:
            heapq.heappush(self._waiting, ticket)
            self._condition.wait_for(lambda: not self._busy and self._waiting[0] == ticket)
            heapq.heappop(self._waiting)
            self._busy = True
        try:
            yield
        finally:
            with self._condition:
                self._busy = False
                self._released_at = time.monotonic()
                self._condition.notify_all()

    def wait_idle(self, max_s: float, quiet_s: float = QUIET_S) -> float:
        """Block while a model call holds or waits for the device, and until none has for `quiet_s` seconds; at most
        `max_s` seconds. Returns the seconds waited (about 0 when the gate was idle)."""
        started = time.monotonic()
        deadline = started + max(0.0, max_s)
        with self._condition:
            while (now := time.monotonic()) < deadline:
                if self._busy or self._waiting:
                    self._condition.wait(deadline - now)
                elif now < self._released_at + quiet_s:
                    self._condition.wait(min(self._released_at + quiet_s, deadline) - now)
                else:
                    break
        return time.monotonic() - started


class TrainingYield:
    """Called by a training between its steps (`backend.training.detector.train_detector`'s `pause`): on a CPU it
    waits while the gate is in use (`DeviceGate.wait_idle`), at most `budget_s` seconds over the training, and
    returns the seconds it waited (the training's time budget does not count them); on other devices, or once the
    budget is spent, it returns 0 at once. `stop` is checked every `YIELD_SLICE_S` while waiting."""

    def __init__(self, gate: DeviceGate, budget_s: float, stop: StopFlag = NEVER):
        self.gate, self.left, self.stop = gate, float(budget_s), stop

    @property
    def active(self) -> bool:
        return self.gate.device == "cpu" and self.left > 0

    def __call__(self) -> float:
        waited = 0.0
        while self.active:
            self.stop.check()
            step = min(YIELD_SLICE_S, self.left)
            took = self.gate.wait_idle(step)
            waited += took
            self.left -= took
            if took < step:  # the gate went idle before the slice ended
                break
        return waited
