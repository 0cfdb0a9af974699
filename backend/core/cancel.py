"""A stop flag for long background work (training, batch prediction): set by another thread, checked by the work
between steps, so a job can be cancelled or a process can shut down without killing a thread mid-computation."""

from __future__ import annotations

import threading

from backend.core.errors import Cancelled


class StopFlag:
    """`set(reason)` from any thread; the work calls `check()` between steps and stops with `Cancelled(reason)`."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        self.reason = reason
        self._event.set()

    @property
    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise `Cancelled` once the flag is set."""
        if self._event.is_set():
            raise Cancelled(self.reason)

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to `timeout_s`, waking early when the flag is set; returns whether it is set."""
        return self._event.wait(timeout_s)


NEVER = StopFlag()  # for callers that never stop their work
