"""On a CPU a training yields the cores to its own project's predict job.

While annotators submit, a project trains nearly all the time (`train_min_new` new annotations start the next
training), so a new version's re-prediction would share two cores with the next training and reach the annotators
half as fast. `TrainingYield` is the training's `pause` (`backend.training.detector.train_detector`): between two
steps it waits while a predict job of the same project runs (a new version's re-prediction, pre-labels of new tasks;
read from the job table, so RQ workers on one machine see each other's jobs), at most `TRAIN_YIELD_S` seconds per
training; the training's time budget does not count the pause. Other projects' jobs do not stop it: the one
training lane serves every project, and a training paused for another project's long pre-labelling would hold up
that project's own first training. GPUs interleave the kernels: a training there never pauses.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from backend.core.cancel import NEVER, StopFlag

log = logging.getLogger(__name__)
POLL_S = 0.5  # how often a training looks at the job table (while waiting, and at most this often between steps)


class TrainingYield:
    """`busy()`: whether the training should wait now (e.g. `project_predicting`); checked at most every `poll_s`.
    Calling it waits while `busy()` holds, on a CPU and within what is left of `budget_s`, and returns the seconds
    waited; `stop` is checked while waiting (`Cancelled` ends the training as usual)."""

    def __init__(self, device: str, budget_s: float, busy: Callable[[], bool], stop: StopFlag = NEVER,
                 poll_s: float = POLL_S):
        self.device, self.left, self.busy, self.stop, self.poll_s = device, float(budget_s), busy, stop, poll_s
        self._next_check = 0.0

    @property
    def active(self) -> bool:
        return self.device == "cpu" and self.left > 0

    def __call__(self) -> float:
        if not self.active or time.monotonic() < self._next_check:
            return 0.0
        waited = 0.0
        while self.active and self.busy():
            self.stop.check()
            started = time.monotonic()
            self.stop.wait(min(self.poll_s, self.left))
            took = time.monotonic() - started
            waited += took
            self.left -= took
        self.stop.check()
        self._next_check = time.monotonic() + self.poll_s
        return waited


def project_predicting(running_jobs: Callable[[], list[dict]], project_id: int, kind: str) -> Callable[[], bool]:
    """A `busy` for `TrainingYield`: whether a job of `kind` (the predict kind) of `project_id` is running (False
    when the job table cannot be read: the training goes on rather than fail over a pause)."""
    def busy() -> bool:
        try:
            return any(int(job["project_id"]) == project_id and job["kind"] == kind for job in running_jobs())
        except Exception as exc:  # noqa: BLE001
            log.warning("project %s: running jobs not read (the training does not pause): %s", project_id, exc)
            return False
    return busy
