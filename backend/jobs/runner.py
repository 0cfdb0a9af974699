"""Running claimed jobs: `JobRunner` (a daemon thread in the service process; RQ workers call `run_once(id)`).

A handler gets the job row and a `JobStop` to check between steps: it raises `Cancelled` at process shutdown
(the job goes back to `pending` and runs again at the next start) and `JobCancelled` once someone asked to cancel
the job (`POST /jobs/<id>/cancel`, from any process: the flag is in the job table; the job ends as cancelled).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from backend.core.cancel import StopFlag
from backend.core.errors import Cancelled, JobCancelled
from backend.jobs.queue import JobQueue

log = logging.getLogger(__name__)
CANCEL_CHECK_S = 2.0  # how often a running job looks at its cancel flag in the job table


class JobStop:
    """What a job checks between steps: the process's shutdown flag, and its own cancel flag in the job table
    (read at most every `CANCEL_CHECK_S`)."""

    def __init__(self, shutdown: StopFlag, queue: JobQueue, job_id: int):
        self.shutdown = shutdown
        self.queue = queue
        self.job_id = job_id
        self._checked_at = 0.0

    def check(self) -> None:
        """Raise `Cancelled` (shutdown) or `JobCancelled` (cancel requested); otherwise return at once."""
        self.shutdown.check()
        now = time.monotonic()
        if now - self._checked_at >= CANCEL_CHECK_S:
            self._checked_at = now
            if self.queue.cancel_requested(self.job_id):
                raise JobCancelled("cancelled by request")

    @property
    def is_set(self) -> bool:
        return self.shutdown.is_set

    def wait(self, timeout_s: float) -> bool:
        return self.shutdown.wait(timeout_s)


Handler = Callable[[dict, JobStop], dict]  # (claimed job row, what to check between steps) → result


class JobRunner:
    """A daemon thread that claims and runs jobs with `handlers[kind](job, stop) -> result dict`.

    `stop()` (called at process shutdown) sets the stop flag the running job checks between steps: that job
    goes back to `pending` (its staging is removed by the code that made it) and the thread ends."""

    def __init__(self, queue: JobQueue, handlers: dict[str, Handler], poll_s: float = 2.0):
        self.queue = queue
        self.handlers = handlers
        self.poll_s = poll_s
        self.stopping = StopFlag()
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)

    def start(self) -> "JobRunner":
        self.queue.recover()
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 20.0) -> None:
        """Ask the running job to stop and wait up to `timeout_s` for the thread to end."""
        self.stopping.set("interrupted by shutdown; re-queued")
        self.queue.wakeup.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def run_once(self, job_id: int | None = None) -> bool:
        """Claim and run one job (the oldest pending one, or `job_id`); False when there was none."""
        job = self.queue.claim(job_id)
        if job is None:
            return False
        handler = self.handlers.get(job["kind"])
        log.info("job %s (%s, project %s) started", job["id"], job["kind"], job["project_id"])
        try:
            if handler is None:
                raise ValueError(f"no handler for job kind {job['kind']!r}")
            result = handler(job, JobStop(self.stopping, self.queue, job["id"]))
        except JobCancelled as exc:
            log.warning("job %s cancelled", job["id"])
            self.queue.finish(job["id"], "cancelled", str(exc), getattr(exc, "result", None))
        except Cancelled as exc:
            log.warning("job %s stopped: %s", job["id"], exc)
            self.queue.requeue(job["id"], str(exc))
        except Exception as exc:  # a failing job must never stop the runner; its status says why
            log.warning("job %s failed: %s", job["id"], exc)
            self.queue.finish(job["id"], "failed", f"{exc.__class__.__name__}: {exc}")
        else:
            log.info("job %s done: %s", job["id"], result)
            self.queue.finish(job["id"], "done", "ok", result)
        return True

    def _loop(self) -> None:
        while not self.stopping.is_set:
            if not self.run_once():
                self.queue.wakeup.wait(self.poll_s)
                self.queue.wakeup.clear()
