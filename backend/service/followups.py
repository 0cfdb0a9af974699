"""The follow-up of `/setup` (`backend.jobs.project_setup.after_setup`: coverage, Label Studio's project settings),
run in one background thread of the service process: `/setup` must answer within Label Studio's 3 s, and Label
Studio's own Connect writes the project's model version *after* our `/setup` answered, so the follow-up waits
`delay_s` after the project's last `/setup` (several arrive per Connect, and one per view of the Model page), and
runs at most once per `min_interval_s` per project unless the setup changed."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)


class SetupFollowUps:
    """`request(project_id, changed)` schedules `run(project_id)`."""

    def __init__(self, run: Callable[[int], None], delay_s: float = 3.0, min_interval_s: float = 60.0):
        self._run = run
        self.delay_s = delay_s
        self.min_interval_s = min_interval_s
        self._due: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def request(self, project_id: int, changed: bool = False) -> None:
        now = time.monotonic()
        with self._wake:
            if not changed and now - self._last.get(project_id, -1e9) < self.min_interval_s \
                    and project_id not in self._due:
                return
            self._due[project_id] = now + self.delay_s
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="setup-follow-ups", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._due:
                    self._wake.wait()
                project_id, due = min(self._due.items(), key=lambda item: item[1])
                wait = due - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                del self._due[project_id]
                self._last[project_id] = time.monotonic()
            try:
                self._run(project_id)
            except Exception:  # noqa: BLE001 - a follow-up never ends the thread
                log.exception("set-up follow-up of project %s failed", project_id)
