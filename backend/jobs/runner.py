"""Running claimed jobs: `JobRunner` (daemon threads in the service process; RQ workers call `run_once(id)`).

Lanes keep long work from holding work users wait for: by default one thread runs training jobs and
`JOB_THREADS` threads run predict and review jobs, so a review page or a new version's re-prediction never queues
behind a 15-minute training. At most one job per project and kind runs at a time (`JobQueue.claim`).

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
from backend.core.errors import BackendError, Cancelled, JobCancelled
from backend.jobs.outcome import job_outcome
from backend.jobs.queue import PREDICT_JOB, PRUNE_EVERY_S, REVIEW_JOB, TRAIN_JOB, JobQueue
from backend.store.health import is_storage_error, storage_message

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


TRAINING_KINDS = (TRAIN_JOB,)
WORK_KINDS = (PREDICT_JOB, REVIEW_JOB)


def default_lanes(job_threads: int) -> dict[str, tuple[tuple[str, ...], int]]:
    """Lane name → (job kinds, threads): one thread for training, `job_threads` for predict and review jobs."""
    return {"training": (TRAINING_KINDS, 1), "work": (WORK_KINDS, job_threads)}


class JobRunner:
    """Daemon threads that claim and run jobs with `handlers[kind](job, stop) -> result dict`; each lane's threads
    claim only its kinds (`lanes`: name → (kinds, threads); default: one thread for every kind). How a job ends is
    `backend.jobs.outcome.job_outcome` of its result.

    `stop()` (called at process shutdown) sets the stop flag the running jobs check between steps: those jobs
    go back to `pending` (their staging is removed by the code that made it) and the threads end."""

    def __init__(self, queue: JobQueue, handlers: dict[str, Handler], poll_s: float = 2.0,
                 lanes: dict[str, tuple[tuple[str, ...] | None, int]] | None = None, stopping: StopFlag | None = None):
        self.queue = queue
        self.handlers = handlers
        self.poll_s = poll_s
        self.stopping = stopping or StopFlag()  # an RQ worker passes its process's flag, set by SIGTERM
        lanes = lanes or {"jobs": (None, 1)}
        self._threads = [threading.Thread(target=self._loop, args=(kinds,), name=f"job-runner-{name}-{i}",
                                          daemon=True)
                         for name, (kinds, count) in lanes.items() for i in range(count)]
        self._unrecorded: list[tuple[str, tuple]] = []  # job-table writes that failed (full disk): retried
        self._unrecorded_lock = threading.Lock()
        self._running: set[int] = set()  # ids of the jobs this runner's threads run now

    def start(self) -> "JobRunner":
        self.queue.recover()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout_s: float = 20.0) -> None:
        """Ask the running jobs to stop and wait up to `timeout_s` for the threads to end."""
        self.stopping.set("interrupted by shutdown; re-queued")
        self.queue.notify()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        for job_id in list(self._running):  # still inside a long step: back to pending now, not counted as a crash
            try:
                self.queue.requeue(job_id, "interrupted by shutdown; re-queued")
            except Exception as exc:  # noqa: BLE001 - the next start recovers it anyway
                log.warning("job %s not re-queued at shutdown: %s", job_id, exc)

    def run_once(self, job_id: int | None = None, kinds: tuple[str, ...] | None = None) -> bool:
        """Claim and run one job (the oldest pending one of `kinds`, or `job_id`); False when there was none."""
        job = self.queue.claim(job_id, kinds)
        if job is None:
            return False
        handler = self.handlers.get(job["kind"])
        log.info("job %s (%s, project %s) started", job["id"], job["kind"], job["project_id"])
        self._running.add(job["id"])
        try:
            if handler is None:
                raise ValueError(f"no handler for job kind {job['kind']!r}")
            result = handler(job, JobStop(self.stopping, self.queue, job["id"]))
        except JobCancelled as exc:
            log.warning("job %s cancelled", job["id"])
            self._record("finish", job["id"], "cancelled", str(exc), getattr(exc, "result", None))
        except Cancelled as exc:
            log.warning("job %s stopped: %s", job["id"], exc)
            self._record("requeue", job["id"], str(exc))
        except Exception as exc:  # a failing job must never stop the runner; its status says why
            log.warning("job %s failed: %s", job["id"], exc)
            if is_storage_error(exc):
                reason = storage_message(exc, self.queue.db.path.parent)
            else:
                reason = exc.message if isinstance(exc, BackendError) else f"{exc.__class__.__name__}: {exc}"
            self._record("finish", job["id"], "failed", reason)
        else:
            status, message = job_outcome(job["kind"], result)
            (log.info if status != "failed" else log.warning)("job %s %s: %s", job["id"], status, message)
            self._record("finish", job["id"], status, message, result)
        finally:
            self._running.discard(job["id"])
        return True

    def _record(self, action: str, *args) -> None:
        """`queue.finish(*args)` or `queue.requeue(*args)`; when the state file cannot be written (full disk), kept
        and retried by the runner's loop until it can (the job reads `running` meanwhile; after a restart the job
        is re-queued like any interrupted one)."""
        try:
            getattr(self.queue, action)(*args)
        except Exception as exc:  # noqa: BLE001 - never lose the runner thread over a write
            log.error("job %s: its %s could not be recorded (%s); retrying", args[0], action, exc)
            with self._unrecorded_lock:
                self._unrecorded.append((action, args))

    def _retry_unrecorded(self) -> bool:
        """Write what could not be written before; True when nothing is left."""
        with self._unrecorded_lock:
            todo, self._unrecorded = self._unrecorded, []
        for action, args in todo:
            self._record(action, *args)
        return not self._unrecorded

    def flush(self, timeout_s: float) -> bool:
        """Retry what could not be recorded (backoff up to 30 s) until it is or `timeout_s` passed; True when all was
        recorded (an RQ worker calls it after each job: its runner is not kept)."""
        deadline, wait = time.monotonic() + timeout_s, 1.0
        while not self._retry_unrecorded():
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(wait, max(0.0, deadline - time.monotonic())))
            wait = min(wait * 2, 30.0)
        return True

    def _loop(self, kinds: tuple[str, ...] | None) -> None:
        """Claim and run jobs until stopped; an error of the job table itself (a full disk) is logged and retried
        with backoff, never the end of the thread."""
        backoff, pruned_at = self.poll_s, 0.0
        while not self.stopping.is_set:
            try:
                if not self._retry_unrecorded():
                    raise RuntimeError("job results not recorded yet")
                if time.monotonic() - pruned_at >= PRUNE_EVERY_S:  # old finished jobs, off the request path
                    pruned_at = time.monotonic()
                    self.queue.prune()
                ran = self.run_once(kinds=kinds)
                backoff = self.poll_s
            except Exception as exc:  # noqa: BLE001
                log.error("job runner: %s; retrying in %.0f s", exc, backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 60.0)
                continue
            if not ran:
                self.queue.wait_for_work(self.poll_s)
