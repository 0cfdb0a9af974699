"""Scale-out with Redis: with `REDIS_URL` set, the service hands each new job to an RQ queue and RQ workers
(`python -m backend.jobs.rq_queue`, the `worker` service in docker-compose) run it.

The SQLite job table under the shared `MODEL_DIR` stays the source of truth (coalescing, status, crash
recovery); Redis only carries job ids. An RQ job claims its row by id, so a duplicate delivery is a no-op,
and the work itself is `Runtime.run_job`, the very code the in-process runner calls.
"""

from __future__ import annotations

import argparse
import logging

QUEUE_NAME = "autolabel-train"
JOB_TIMEOUT_MARGIN_S = 1800  # beyond the project's training budget: export, image downloads, evaluation

log = logging.getLogger(__name__)
_runtime = None  # the worker process's Runtime, built on its first job (models load lazily, once)


class RQDispatcher:
    """Puts job ids on the RQ queue of `redis_url`."""

    def __init__(self, redis_url: str):
        from redis import Redis
        from rq import Queue

        self.queue = Queue(QUEUE_NAME, connection=Redis.from_url(redis_url))

    def submit(self, job_id: int, budget_s: float) -> None:
        self.queue.enqueue(run_job, job_id, job_timeout=int(budget_s) + JOB_TIMEOUT_MARGIN_S,
                           job_id=f"autolabel-job-{job_id}", description=f"train job {job_id}")


def run_job(job_id: int) -> bool:
    """What an RQ worker executes: claim job `job_id` from the SQLite table and run it (False if another
    worker already has it or it is no longer pending)."""
    from backend.jobs.queue import JobRunner

    runtime = _worker_runtime()
    return JobRunner(runtime.jobs, {"train": runtime.run_job}).run_once(job_id)


def _worker_runtime():
    global _runtime
    if _runtime is None:
        from backend.core.settings import Settings
        from backend.service.runtime import Runtime

        _runtime = Runtime(Settings.from_env())
    return _runtime


def main() -> None:
    """Run an RQ worker for the training queue; first re-queue jobs that a dead process left behind."""
    from redis import Redis
    from rq import SimpleWorker

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    args = parser.parse_args()
    runtime = _worker_runtime()
    logging.basicConfig(level=runtime.settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not runtime.settings.redis_url:
        raise SystemExit("REDIS_URL is not set")
    runtime.start_job_runner()  # with REDIS_URL: recover dead jobs and (re-)queue every pending one
    # SimpleWorker runs jobs in this process: the CUDA context and loaded weights stay warm between jobs
    worker = SimpleWorker([runtime.dispatcher.queue], connection=Redis.from_url(runtime.settings.redis_url))
    worker.work(burst=args.burst)


if __name__ == "__main__":
    main()
