"""One compute device per process, shared by interactive requests, `/predict` and background prediction: a
`DeviceGate` lets one model call run at a time and, when several wait, gives the device to the most urgent.

The rule: an interactive smart-tool request (an annotator waits, one image) goes first; then `/predict`
(Label Studio waits up to 100 s); background prediction jobs last, one chunk of images per turn, so a
5,000-task job never makes an interactive request wait for more than one chunk. Training does not take the gate:
it runs in its own job between these turns (on a GPU the device interleaves the kernels; on a CPU the operating
system shares the cores).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from contextlib import contextmanager

INTERACTIVE = 0
PREDICT = 1
BACKGROUND = 2


class DeviceGate:
    """A lock whose waiters are served by priority (lower first), then in arrival order."""

    def __init__(self, device: str):
        self.device = device
        self._condition = threading.Condition()
        self._busy = False
        self._waiting: list[tuple[int, int]] = []
        self._order = itertools.count()

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
                self._condition.notify_all()
