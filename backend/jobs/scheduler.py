"""Enqueueing jobs: at most one pending job per (project, kind) in the SQLite table (bursts coalesce), handed to
the RQ queue when `REDIS_URL` is set (otherwise the in-process runner claims it).

With Redis, the service hands jobs over in a background thread (`start_handoff`), so a webhook never waits on
Redis (its calls time out after 2 s anyway): a job enqueued while Redis is down is handed over within
`HANDOFF_POLL_S` of its return, and a job pending for `LOST_AFTER_S` that Redis no longer knows (Redis restarted
without its data) is handed over again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from backend.core.params import ProjectParams
from backend.jobs.queue import PREDICT_JOB, PRUNE_EVERY_S, REVIEW_JOB, JobQueue

log = logging.getLogger(__name__)
JOB_TIMEOUT_MARGIN_S = 1800  # RQ time limit beyond a project's training budget: export, downloads, evaluation
PREDICT_TIMEOUT_S = 24 * 3600  # RQ time limit of a whole predict job (its parts run in other workers too)
PART_TIMEOUT_S = 3600  # RQ time limit of one part of a predict job
REVIEW_TIMEOUT_S = 2 * 3600  # RQ time limit of a review job (export, up to 2,000 crops, the report)
HANDOFF_POLL_S = 5.0  # the handoff thread looks for undelivered jobs this often
LOST_AFTER_S = 60.0  # a job pending this long is checked against Redis (and handed over again when unknown)
OUTAGE_REPORT_S = 300.0  # while handing over keeps failing, the log repeats it this often (not at every poll)


class OutageLog:
    """What to log about a call retried every few seconds: the first failure, then at most one line every
    `report_s` while it keeps failing, and one line when it works again (an hour of Redis outage: 13 lines, not 720).
    `now`: a monotonic clock in seconds. Each method returns the line to log, or None."""

    def __init__(self, what: str, report_s: float = OUTAGE_REPORT_S, now: Callable[[], float] = time.monotonic):
        self.what, self.report_s, self.now = what, report_s, now
        self.since: float | None = None
        self.reported = 0.0

    def failed(self, exc: BaseException) -> str | None:
        now = self.now()
        if self.since is None:
            self.since = self.reported = now
            return f"{self.what} failed ({exc}); retrying"
        if now - self.reported >= self.report_s:
            self.reported = now
            return f"{self.what} still fails after {now - self.since:.0f} s ({exc}); retrying"
        return None

    def worked(self) -> str | None:
        if self.since is None:
            return None
        line, self.since = f"{self.what} works again after {self.now() - self.since:.0f} s", None
        return line


class Scheduler:
    """`params_of(project_id)` gives a project's parameters (the RQ time limit follows its training budget)."""

    def __init__(self, queue: JobQueue, redis_url: str, params_of: Callable[[int], ProjectParams]):
        self.queue = queue
        self.params_of = params_of
        self.dispatcher = None
        if redis_url:
            from backend.jobs.rq_dispatch import RQDispatcher

            self.dispatcher = RQDispatcher(redis_url)
        self._undelivered: set[int] = set()  # guarded by _lock: request threads add, the handoff thread removes
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._handoff: threading.Thread | None = None

    @property
    def runner_kind(self) -> str:
        return "rq" if self.dispatcher is not None else "in-process"

    def request(self, project_id: int, kind: str, trigger: str, options: dict | None = None,
                merge=None) -> tuple[int, bool]:
        """(job id, created): a pending job of `kind` for the project (the already pending one when there is,
        its options merged with `merge`)."""
        job_id, created = self.queue.enqueue(project_id, kind, trigger, options, merge)
        if created and self.dispatcher is not None:
            if self._handoff is not None:  # the service: handed over by the handoff thread, never waited on here
                with self._lock:
                    self._undelivered.add(job_id)
                self._wake.set()
            else:
                self._dispatch(job_id, project_id, kind)
        return job_id, created

    def start_handoff(self) -> None:
        """With Redis: a daemon thread that hands pending jobs to RQ (see the module docstring), starting with every
        job pending now (after those of dead processes are re-queued)."""
        if self.dispatcher is None or self._handoff is not None:
            return
        self.queue.recover()
        with self._lock:
            self._undelivered.update(job["id"] for job in self.queue.pending())
        self._handoff = threading.Thread(target=self._handoff_loop, name="rq-handoff", daemon=True)
        self._handoff.start()

    def _handoff_loop(self) -> None:
        pruned_at, outage = 0.0, OutageLog("handing jobs to Redis")
        while True:
            try:
                self._hand_over()
                if time.monotonic() - pruned_at >= PRUNE_EVERY_S:  # old finished jobs (no runner here with RQ)
                    pruned_at = time.monotonic()
                    self.queue.prune()
                if (line := outage.worked()) is not None:
                    log.warning(line)
            except Exception as exc:  # noqa: BLE001 - Redis or the state file failing: try again later
                if (line := outage.failed(exc)) is not None:
                    log.error(line)
            self._wake.wait(HANDOFF_POLL_S)
            self._wake.clear()

    def _hand_over(self) -> None:
        now = time.time()
        with self._lock:
            undelivered = set(self._undelivered)
        for job in self.queue.pending():
            lost = job["id"] not in undelivered and now - job["created_at"] >= LOST_AFTER_S and \
                not self.dispatcher.known(job["id"])
            if job["id"] in undelivered or lost:
                delivered = self._dispatch(job["id"], job["project_id"], job["kind"])
                with self._lock:
                    (self._undelivered.discard if delivered else self._undelivered.add)(job["id"])
        pending = {job["id"] for job in self.queue.pending()}
        with self._lock:
            self._undelivered -= undelivered - pending  # seen before and no longer pending: claimed or cancelled

    def dispatch_part(self, job_id: int, part: int) -> None:
        """Hand one part of a predict job to the RQ workers (no-op without Redis)."""
        if self.dispatcher is not None:
            try:
                self.dispatcher.submit_part(job_id, part, PART_TIMEOUT_S)
            except Exception as exc:  # the job's own process runs the part then
                log.error("part %s of job %s could not be handed to Redis (%s)", part, job_id, exc)

    def requeue_pending(self) -> None:
        """With Redis: jobs left by dead processes back to pending, then every pending job (re-)queued."""
        if self.dispatcher is None:
            return
        self.queue.recover()
        for job in self.queue.pending():
            self._dispatch(job["id"], job["project_id"], job["kind"])

    def _dispatch(self, job_id: int, project_id: int, kind: str) -> bool:
        try:
            if kind == PREDICT_JOB:
                timeout = PREDICT_TIMEOUT_S
            elif kind == REVIEW_JOB:
                timeout = REVIEW_TIMEOUT_S
            else:
                timeout = self.params_of(project_id).train.time_budget_s + JOB_TIMEOUT_MARGIN_S
            self.dispatcher.submit(job_id, kind, timeout)
        except Exception as exc:  # Redis down: the job stays pending; the handoff thread tries again
            log.error("job %s could not be handed to Redis (%s); it stays pending", job_id, exc)
            return False
        return True
