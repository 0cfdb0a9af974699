"""Scale-out with Redis, the worker side: `python -m backend.jobs.rq_queue` (the `worker` service in
docker-compose) runs the jobs the service hands to the RQ queue (`backend.jobs.rq_dispatch`).

The SQLite job table under the shared `MODEL_DIR` stays the source of truth (coalescing, status, crash
recovery); Redis only carries job ids. An RQ job claims its row by id, so a duplicate delivery is a no-op,
and the work itself is `JobContext.run_job`, the very code the in-process runner calls.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

from backend.core.cancel import StopFlag
from backend.core.errors import Cancelled
from backend.core.settings import Settings
from backend.jobs import prediction
from backend.jobs.context import JobContext
from backend.jobs.rq_dispatch import QUEUES
from backend.jobs.runner import JobRunner, JobStop

log = logging.getLogger(__name__)
_context: JobContext | None = None  # the worker process's context, built once (models load lazily, once)
_shutdown = StopFlag()  # set by SIGTERM / SIGINT (`_stopping_worker`): the running job or part stops at its next step
RECORD_TIMEOUT_S = 600.0  # how long a worker keeps retrying to record a job's outcome (a full disk)
TEARDOWN_S = 5.0  # a stopping worker's longest goodbye to Redis (RQ's unsubscribe once hung > 30 s in CI)


def run_job(job_id: int) -> bool:
    """What an RQ worker executes: claim job `job_id` from the SQLite table and run it (False if another
    worker already has it or it is no longer pending)."""
    context = worker_context()
    runner = JobRunner(context.jobs, context.handlers(), stopping=_shutdown)
    ran = runner.run_once(job_id)  # stopped by a signal: the job is `pending` again, and re-queued just below
    if not runner.flush(RECORD_TIMEOUT_S):  # a full disk: the job stays `running` until a worker restart
        log.error("job %s: its outcome could not be recorded in %s s", job_id, RECORD_TIMEOUT_S)
    if ran:  # a job of the same project and kind that waited for this one can start now (or this one, stopped)
        context.scheduler.requeue_pending()
    return ran


def run_part(job_id: int, part: int) -> bool:
    """What an RQ worker executes for one part of a running predict job: claim it and predict its tasks (False if
    the job is no longer running or another worker has the part)."""
    context = worker_context()
    job = context.jobs.get(job_id)
    if job is None or job["status"] != "running":
        return False
    claimed = context.parts.claim(job_id, part)
    if claimed is None:
        return False
    try:
        prediction.run_part(context, job, claimed, JobStop(_shutdown, context.jobs, job_id))
    except Cancelled:  # cancelled or stopping: the part's status says which; the job's own process finishes it
        return False
    return True


def worker_context() -> JobContext:
    global _context
    if _context is None:
        _context = JobContext.build(Settings.from_env())
    return _context


def _stopping_worker():
    """RQ's `SimpleWorker` whose warm shutdown (SIGTERM from `docker stop` or a scale-down, or Ctrl+C) also sets
    `_shutdown`: the job or part it runs stops at its next step and goes back to `pending` for another worker,
    instead of RQ waiting until the job would have ended (a training, a part of a predict job: minutes; docker
    kills after 10 s). A second signal is RQ's cold shutdown."""
    from rq import SimpleWorker

    class StoppingWorker(SimpleWorker):
        def request_stop(self, signum, frame):
            _shutdown.set("the worker is stopping; re-queued")
            super().request_stop(signum, frame)

        def teardown(self):  # the work loop has ended: the job it ran is recorded (or handed back) by now
            if _shutdown.is_set:
                _exit_after(TEARDOWN_S)
            super().teardown()

    return StoppingWorker


def _exit_after(seconds: float) -> None:
    """Ends the process `seconds` from now, whatever it is waiting on then (a daemon timer thread)."""
    timer = threading.Timer(seconds, _exit_now, kwargs={"note": f"the worker's teardown took over {seconds} s; "
                                                                "exiting"})
    timer.daemon = True
    timer.start()


def _exit_now(note: str = "") -> None:
    """End the process with code 0, skipping the interpreter's teardown (seconds of garbage collection of the loaded
    models on a loaded CPU) and any thread still waiting. Logs are flushed; with a `note` (the timer: something
    hangs, maybe holding a logging lock) the note goes straight to stderr and no logging lock is taken."""
    if note:
        sys.stderr.write(f"{note}\n")
    else:
        logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main() -> None:
    """Run an RQ worker for the job queue; first re-queue jobs that a dead process left behind."""
    from redis import Redis
    from rq import Queue

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--queues", default="predict,train",
                        help="queues to take work from, in priority order: predict (predict and review jobs, parts of "
                             "predict jobs) and/or train (default: predict,train)")
    args = parser.parse_args()
    names = [name.strip() for name in args.queues.split(",") if name.strip()]
    if not names or any(name not in QUEUES for name in names):
        raise SystemExit(f"--queues takes a comma-separated list of {sorted(QUEUES)}, got {args.queues!r}")
    context = worker_context()
    logging.basicConfig(level=context.settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if context.scheduler.dispatcher is None:
        raise SystemExit("REDIS_URL is not set")
    context.scheduler.requeue_pending()
    # SimpleWorker runs jobs in this process: the CUDA context and loaded weights stay warm between jobs
    connection = Redis.from_url(context.settings.redis_url)  # no short timeout: the worker blocks on its queues
    worker = _stopping_worker()([Queue(QUEUES[name], connection=connection) for name in names], connection=connection)
    worker.work(burst=args.burst)
    if _shutdown.is_set:  # stopped by a signal: what it ran is recorded in SQLite and Redis
        _exit_now()


if __name__ == "__main__":  # run as `python -m`: use the importable module, the one RQ's jobs name (one context, and
    from backend.jobs.rq_queue import main as imported_main  # the `_shutdown` flag the signal sets is theirs)

    imported_main()
